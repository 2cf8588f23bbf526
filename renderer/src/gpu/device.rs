//! The process's Vulkan instance, and opening a device on it: the best physical device, the
//! extensions an exported output needs, the timeline semaphore and timestamp queries.

use std::collections::VecDeque;
use std::ffi::CStr;

use ash::vk;

use super::{vkerr, Buffer, Gpu, Image, Slot, Timeline, QUERIES_PER_FRAME, SLOTS};
use crate::model::Model;
use crate::{FrameOutput, RenderError};

/// The physical device chosen, and what the renderer needs to know of it.
struct Physical {
    device: vk::PhysicalDevice,
    family: u32,
    props: vk::PhysicalDeviceProperties,
}

impl Gpu {
    pub fn new(
        width: u32,
        height: u32,
        background: [u8; 3],
        model: &Model,
        output: FrameOutput,
    ) -> Result<Self, RenderError> {
        let instance = process_instance()?.clone();
        let physical = choose_physical(&instance)?;
        let exported = output != FrameOutput::HostI420;
        // SAFETY: `physical.device` was enumerated from `instance`, which is never destroyed.
        let timeline_why_not = unsafe {
            if exported {
                export_support(&instance, physical.device).map_err(RenderError::NoExport)?;
            }
            if exported {
                timeline_support(&instance, physical.device).err()
            } else {
                None
            }
        };
        let with_timeline = exported && timeline_why_not.is_none();
        let device = open_device(&instance, &physical, exported, with_timeline)?;
        let device_name = physical.device_name();
        let software = physical.props.device_type == vk::PhysicalDeviceType::CPU;
        tracing::info!(device = %device_name, software, ?output, "Vulkan device opened");
        if let Some(why) = &timeline_why_not {
            tracing::info!(why = %why, "no exported timeline semaphore; frames are handed over after their fence");
        }
        // SAFETY: as above; the device was just made from this instance and physical device.
        let (memory_props, device_uuid, timestamp_bits) = unsafe {
            let memory_props = instance.get_physical_device_memory_properties(physical.device);
            let mut id_props = vk::PhysicalDeviceIDProperties::default();
            let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut id_props);
            instance.get_physical_device_properties2(physical.device, &mut props2);
            let families = instance.get_physical_device_queue_family_properties(physical.device);
            (memory_props, id_props.device_uuid, families[physical.family as usize].timestamp_valid_bits)
        };
        let external_fd = exported.then(|| ash::khr::external_memory_fd::Device::new(&instance, &device));
        let timeline_export = with_timeline.then(|| ash::khr::external_semaphore_fd::Device::new(&instance, &device));
        // SAFETY: the queue family was asked for when the device was made, with one queue.
        let queue = unsafe { device.get_device_queue(physical.family, 0) };
        let mut gpu = Self::with_device(device, queue, physical.family, memory_props, width, height)?;
        gpu.device_name = device_name;
        gpu.software = software;
        gpu.output = output;
        gpu.device_uuid = device_uuid;
        gpu.external_fd = external_fd;
        if let Some(export) = timeline_export {
            gpu.timeline = Some(gpu.timeline_semaphore(export)?);
        }
        gpu.background = background.map(|c| f32::from(c) / 255.0);
        if timestamp_bits > 0 {
            gpu.timestamps = Some((gpu.query_pool()?, physical.props.limits.timestamp_period));
        }
        gpu.build(model)?;
        Ok(gpu)
    }

    /// An exportable timeline semaphore (the device was made with the extensions it needs).
    fn timeline_semaphore(&self, export: ash::khr::external_semaphore_fd::Device) -> Result<Timeline, RenderError> {
        let mut kind = vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
        let mut exportable =
            vk::ExportSemaphoreCreateInfo::default().handle_types(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
        let info = vk::SemaphoreCreateInfo::default().push_next(&mut kind).push_next(&mut exportable);
        // SAFETY: a valid create info on our device; the semaphore is destroyed in Drop.
        let semaphore =
            unsafe { self.device.create_semaphore(&info, None) }.map_err(vkerr("create timeline semaphore"))?;
        Ok(Timeline { semaphore, export, last_value: 0 })
    }

    /// [`QUERIES_PER_FRAME`] timestamp queries for every slot.
    fn query_pool(&self) -> Result<vk::QueryPool, RenderError> {
        let info = vk::QueryPoolCreateInfo::default()
            .query_type(vk::QueryType::TIMESTAMP)
            .query_count(QUERIES_PER_FRAME * SLOTS as u32);
        // SAFETY: a valid create info on our device; the pool is destroyed in Drop.
        unsafe { self.device.create_query_pool(&info, None) }.map_err(vkerr("create query pool"))
    }

    /// Creates the per-device objects that do not depend on the mesh or shaders.
    fn with_device(
        device: ash::Device,
        queue: vk::Queue,
        family: u32,
        memory_props: vk::PhysicalDeviceMemoryProperties,
        width: u32,
        height: u32,
    ) -> Result<Self, RenderError> {
        let pool_info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(family)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: a valid create info on a live device; the pool is destroyed in Drop.
        let pool = unsafe { device.create_command_pool(&pool_info, None) }.map_err(vkerr("create command pool"))?;
        let cmds_info = vk::CommandBufferAllocateInfo::default().command_pool(pool).command_buffer_count(SLOTS as u32);
        // SAFETY: the pool was just made on this device; its buffers go with it.
        let cmds = unsafe { device.allocate_command_buffers(&cmds_info) }.map_err(vkerr("allocate command buffers"))?;
        let mut slots = Vec::with_capacity(SLOTS);
        for cmd in cmds {
            // Pushed one by one so that Drop destroys the fences made before a failure.
            // SAFETY: a valid create info on a live device.
            let fence =
                unsafe { device.create_fence(&vk::FenceCreateInfo::default(), None) }.map_err(vkerr("create fence"))?;
            slots.push(Slot {
                cmd,
                fence,
                avatar_set: vk::DescriptorSet::null(),
                convert_set: vk::DescriptorSet::null(),
                uniform: Buffer::NULL,
                joints: Buffer::NULL,
                posed: Buffer::NULL,
                dims: Buffer::NULL,
                overlay: Buffer::NULL,
                overlay_generation: 0,
                output: Buffer::NULL,
                nv12: Buffer::NULL,
                nv12_allocation: 0,
                timeline_value: 0,
                unreclaimed: false,
            });
        }
        Ok(Self {
            device,
            device_name: String::new(),
            software: false,
            output: FrameOutput::HostI420,
            device_uuid: [0; 16],
            external_fd: None,
            timeline: None,
            memory_props,
            queue,
            family,
            width,
            height,
            pool,
            slots,
            in_flight: VecDeque::new(),
            broken: false,
            color: Image::NULL,
            depth: Image::NULL,
            render_pass: vk::RenderPass::null(),
            framebuffer: vk::Framebuffer::null(),
            modules: Vec::new(),
            set_layouts: Vec::new(),
            layouts: Vec::new(),
            pipelines: Vec::new(),
            descriptor_pool: vk::DescriptorPool::null(),
            vertex: Buffer::NULL,
            index: Buffer::NULL,
            index_count: 0,
            opaque_index_count: 0,
            deltas: Buffer::NULL,
            vertex_count: 0,
            textures: Image::NULL,
            sampler: vk::Sampler::null(),
            overlay: Vec::new(),
            overlay_generation: 0,
            overlay_on: false,
            background: [0.0; 3],
            timestamps: None,
            last_timings: None,
        })
    }
}

impl Physical {
    fn device_name(&self) -> String {
        // SAFETY: Vulkan fills `device_name` with a NUL-terminated string inside the array.
        unsafe { CStr::from_ptr(self.props.device_name.as_ptr()) }.to_string_lossy().into_owned()
    }
}

/// The best device with a queue for graphics and compute: a real GPU before a virtual or
/// software one (lavapipe).
fn choose_physical(instance: &ash::Instance) -> Result<Physical, RenderError> {
    // SAFETY: the instance is valid for the life of the process.
    let physicals = unsafe { instance.enumerate_physical_devices() }.map_err(vkerr("enumerate devices"))?;
    let mut best: Option<(Physical, i32)> = None;
    for device in physicals {
        // SAFETY: `device` was just enumerated from this instance.
        let (props, families) = unsafe {
            (
                instance.get_physical_device_properties(device),
                instance.get_physical_device_queue_family_properties(device),
            )
        };
        let Some(family) =
            families.iter().position(|f| f.queue_flags.contains(vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE))
        else {
            continue;
        };
        let rank = match props.device_type {
            vk::PhysicalDeviceType::DISCRETE_GPU => 3,
            vk::PhysicalDeviceType::INTEGRATED_GPU => 2,
            vk::PhysicalDeviceType::VIRTUAL_GPU => 1,
            _ => 0,
        };
        if best.as_ref().is_none_or(|b| rank > b.1) {
            best = Some((Physical { device, family: family as u32, props }, rank));
        }
    }
    best.map(|(p, _)| p).ok_or_else(|| RenderError::NoVulkan("no Vulkan device with graphics and compute".into()))
}

/// A logical device with one queue, and the extensions an exported output (and its timeline
/// semaphore) needs.
fn open_device(
    instance: &ash::Instance,
    physical: &Physical,
    exported: bool,
    with_timeline: bool,
) -> Result<ash::Device, RenderError> {
    let mut extensions = Vec::new();
    if exported {
        extensions.push(ash::khr::external_memory_fd::NAME.as_ptr());
    }
    if with_timeline {
        extensions.push(ash::khr::timeline_semaphore::NAME.as_ptr());
        extensions.push(ash::khr::external_semaphore_fd::NAME.as_ptr());
    }
    let priorities = [1.0f32];
    let queue_info =
        [vk::DeviceQueueCreateInfo::default().queue_family_index(physical.family).queue_priorities(&priorities)];
    let mut timeline_features = vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
    let mut device_info =
        vk::DeviceCreateInfo::default().queue_create_infos(&queue_info).enabled_extension_names(&extensions);
    if with_timeline {
        device_info = device_info.push_next(&mut timeline_features);
    }
    // SAFETY: the physical device belongs to the instance; the extensions were checked by
    // `export_support` and `timeline_support`; the device is destroyed in `Gpu`'s Drop.
    unsafe { instance.create_device(physical.device, &device_info, None) }.map_err(vkerr("create device"))
}

/// The Vulkan loader and one instance for the life of the process; every renderer makes its own
/// device from it. Never unloaded or destroyed, on purpose: destroying the last instance unloads
/// the driver (the NVIDIA ICD), whose per-thread destructors then run as unmapped code when a
/// thread that once called into it exits — a segfault after a renderer was rebuilt on another
/// thread (seen on an H100). A lost device does not invalidate the instance.
fn process_instance() -> Result<&'static ash::Instance, RenderError> {
    static VULKAN: std::sync::OnceLock<Result<(ash::Entry, ash::Instance), RenderError>> = std::sync::OnceLock::new();
    let loaded = VULKAN.get_or_init(|| {
        // SAFETY: loading the system Vulkan loader; failure is reported, not assumed.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| RenderError::NoVulkan(e.to_string()))?;
        let app = vk::ApplicationInfo::default().application_name(c"emcee-stage").api_version(vk::API_VERSION_1_1);
        let instance_info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: valid create info with no extensions or layers.
        let instance = unsafe { entry.create_instance(&instance_info, None) }.map_err(vkerr("create instance"))?;
        Ok((entry, instance))
    });
    match loaded {
        Ok((_, instance)) => Ok(instance),
        Err(e) => Err(e.clone()),
    }
}

/// Why `physical` cannot export buffers as opaque fds, if it cannot.
///
/// # Safety
/// `physical` belongs to `instance`.
unsafe fn export_support(instance: &ash::Instance, physical: vk::PhysicalDevice) -> Result<(), String> {
    // SAFETY: the caller's promise: `physical` belongs to `instance`.
    let extensions = unsafe { instance.enumerate_device_extension_properties(physical) }.map_err(|e| e.to_string())?;
    let has = extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(ash::khr::external_memory_fd::NAME));
    if !has {
        return Err("the device has no VK_KHR_external_memory_fd".into());
    }
    let info = vk::PhysicalDeviceExternalBufferInfo::default()
        .usage(vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::TRANSFER_SRC)
        .handle_type(vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD);
    let mut props = vk::ExternalBufferProperties::default();
    // SAFETY: as above.
    unsafe { instance.get_physical_device_external_buffer_properties(physical, &info, &mut props) };
    let features = props.external_memory_properties.external_memory_features;
    if !features.contains(vk::ExternalMemoryFeatureFlags::EXPORTABLE) {
        return Err("storage buffers cannot be exported as opaque fds on this device".into());
    }
    Ok(())
}

/// Why `physical` cannot export a timeline semaphore as an opaque fd, if it cannot.
///
/// # Safety
/// `physical` belongs to `instance`.
unsafe fn timeline_support(instance: &ash::Instance, physical: vk::PhysicalDevice) -> Result<(), String> {
    // SAFETY: the caller's promise: `physical` belongs to `instance`.
    let extensions = unsafe { instance.enumerate_device_extension_properties(physical) }.map_err(|e| e.to_string())?;
    for wanted in [ash::khr::timeline_semaphore::NAME, ash::khr::external_semaphore_fd::NAME] {
        if !extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(wanted)) {
            return Err(format!("the device has no {}", wanted.to_string_lossy()));
        }
    }
    let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default();
    let mut features = vk::PhysicalDeviceFeatures2::default().push_next(&mut timeline);
    // SAFETY: as above.
    unsafe { instance.get_physical_device_features2(physical, &mut features) };
    if timeline.timeline_semaphore == vk::FALSE {
        return Err("timeline semaphores are not enabled on this device".into());
    }
    let mut kind = vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
    let info = vk::PhysicalDeviceExternalSemaphoreInfo::default()
        .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD)
        .push_next(&mut kind);
    let mut props = vk::ExternalSemaphoreProperties::default();
    // SAFETY: as above.
    unsafe { instance.get_physical_device_external_semaphore_properties(physical, &info, &mut props) };
    if !props.external_semaphore_features.contains(vk::ExternalSemaphoreFeatureFlags::EXPORTABLE) {
        return Err("timeline semaphores cannot be exported as opaque fds on this device".into());
    }
    Ok(())
}
