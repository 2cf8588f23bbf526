//! Headless Vulkan: render the avatar into an RGBA image, convert it with a compute pass — to
//! I420 read back to the host (the CPU encoder), or to NV12 in exportable device buffers (the
//! zero-copy encoder). Runs on any Vulkan 1.1 device (lavapipe on CI).
//!
//! Frames go through a ring of [`SLOTS`] slots, each with its own command buffer, fence,
//! per-frame buffers and output: while the GPU (or lavapipe's threads) draws frame n, the caller
//! prepares frame n+1 and reads frame n−1 back. What every frame shares — the colour and depth
//! images — is ordered between frames by the render pass's external dependencies.
//!
//! With an exported output the device may also export a timeline semaphore (where it has
//! `VK_KHR_timeline_semaphore` and `VK_KHR_external_semaphore_fd`; NVIDIA does, lavapipe does
//! not): frame n signals value n when its NV12 is written. Then [`Gpu::wait_oldest`] may hand a
//! frame over before the GPU has finished it — the consumer (CUDA) waits for the value on its
//! own stream — and the slot's fence is waited only when the slot is drawn into again.

use std::collections::VecDeque;
use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd};

use ash::vk;

use crate::model::Model;
use crate::{ExportedFrameBuffer, ExportedRing, FrameOutput, RenderError};

const COLOR_FORMAT: vk::Format = vk::Format::R8G8B8A8_UNORM;
const DEPTH_FORMAT: vk::Format = vk::Format::D32_SFLOAT;
/// The `Frame` uniform block of avatar.wgsl, in 32-bit words: view_proj (16), light (4),
/// morph count (4), active morphs (32 × 4).
pub const FRAME_UNIFORM_WORDS: usize = 16 + 4 + 4 + 4 * crate::rig::MAX_ACTIVE_MORPHS;
/// Floats per vertex: position 3, normal 3, colour 3, joints 4, weights 4, uv 2, texture layer
/// and alpha cut-off 2.
const VERTEX_FLOATS: usize = 21;
/// Base colour textures live in one array image of this side (each scaled to fit).
const TEXTURE_FORMAT: vk::Format = vk::Format::R8G8B8A8_SRGB;

static AVATAR_SPV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/avatar.spv"));
static CONVERT_SPV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/convert.spv"));
static POSE_SPV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pose.spv"));

/// Frames that can be in flight at once: one drawing while the previous one is read back.
pub const SLOTS: usize = 2;
/// Timestamp queries per frame: start, after render, after convert.
const QUERIES_PER_FRAME: u32 = 3;
/// The `Dims` uniform block of convert.wgsl: width, height, overlay on, level, outputs.
const DIMS_WORDS: usize = 5;
/// `Dims.outputs` bits: I420 into binding 1, NV12 into binding 4.
const WRITE_I420: u32 = 1;
const WRITE_NV12: u32 = 2;

fn vkerr(what: &'static str) -> impl Fn(vk::Result) -> RenderError {
    move |code| RenderError::Vulkan { what, code }
}

struct Buffer {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    size: u64,
    mapped: Option<*mut u8>,
}

struct Image {
    image: vk::Image,
    memory: vk::DeviceMemory,
    view: vk::ImageView,
}

/// What one frame in flight owns: the GPU may still use these while the CPU prepares the next
/// frame in another slot.
struct Slot {
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    avatar_set: vk::DescriptorSet,
    convert_set: vk::DescriptorSet,
    /// The `Frame` uniform block.
    uniform: Buffer,
    /// Skinning palette (mat4 per entry).
    joints: Buffer,
    /// Each vertex's position and normal this frame (two vec4), written by the pose pass.
    posed: Buffer,
    /// Width, height, overlay on/off, picture level.
    dims: Buffer,
    /// Premultiplied RGBA8 drawn over the picture, as of `overlay_generation`.
    overlay: Buffer,
    overlay_generation: u64,
    /// The frame's I420 bytes (or NV12, read back for verification), host-visible; null when
    /// nothing is read back.
    output: Buffer,
    /// The frame's NV12 bytes in exportable device memory (dedicated allocation); null unless
    /// the output is exported.
    nv12: Buffer,
    /// `nv12`'s allocation size, which an importer must be given (drivers pad).
    nv12_allocation: u64,
    /// The timeline value this slot's last frame signals.
    timeline_value: u64,
    /// Handed over before its fence signalled: the fence is waited before the slot is reused.
    unreclaimed: bool,
}

/// The exported timeline semaphore and the value the last submitted frame signals.
struct Timeline {
    semaphore: vk::Semaphore,
    export: ash::khr::external_semaphore_fd::Device,
    last_value: u64,
}

pub struct Gpu {
    device: ash::Device,
    device_name: String,
    software: bool,
    /// What the convert pass writes, and what comes back to the host.
    output: FrameOutput,
    /// `deviceUUID`: an importer (CUDA) must open the same device.
    device_uuid: [u8; 16],
    /// Present when the output is exported.
    external_fd: Option<ash::khr::external_memory_fd::Device>,
    /// Present when the output is exported and the device can export a timeline semaphore.
    timeline: Option<Timeline>,
    memory_props: vk::PhysicalDeviceMemoryProperties,
    queue: vk::Queue,
    family: u32,
    width: u32,
    height: u32,
    pool: vk::CommandPool,
    slots: Vec<Slot>,
    /// Slots submitted and not yet read back, oldest first.
    in_flight: VecDeque<usize>,
    /// Set when waiting for a frame failed: the device is lost or hung, and no slot is reused.
    broken: bool,
    color: Image,
    depth: Image,
    render_pass: vk::RenderPass,
    framebuffer: vk::Framebuffer,
    modules: Vec<vk::ShaderModule>,
    set_layouts: Vec<vk::DescriptorSetLayout>,
    layouts: Vec<vk::PipelineLayout>,
    pipelines: Vec<vk::Pipeline>,
    descriptor_pool: vk::DescriptorPool,
    vertex: Buffer,
    index: Buffer,
    index_count: u32,
    /// The first `opaque_index_count` indices are opaque triangles; the rest are alpha-masked.
    opaque_index_count: u32,
    /// Morph target deltas (vec3 as three f32), target after target.
    deltas: Buffer,
    vertex_count: u32,
    /// Base colour textures, one layer each (a white layer when the model has none).
    textures: Image,
    sampler: vk::Sampler,
    /// The overlay as last set, copied into each slot when that slot's copy is older.
    overlay: Vec<u8>,
    overlay_generation: u64,
    overlay_on: bool,
    background: [f32; 3],
    /// [`QUERIES_PER_FRAME`] timestamps per slot, when the queue has them.
    timestamps: Option<(vk::QueryPool, f32)>,
    last_timings: Option<GpuTimings>,
}

/// Where one frame's GPU time went, from timestamp queries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuTimings {
    pub render_ms: f64,
    pub convert_ms: f64,
}

// SAFETY: every Vulkan handle here is owned by this struct and used only through `&mut self`
// (or dropped in `Drop`); the raw mapped pointers point into memory owned by the same struct.
unsafe impl Send for Gpu {}

impl Gpu {
    pub fn new(
        width: u32,
        height: u32,
        background: [u8; 3],
        model: &Model,
        output: FrameOutput,
    ) -> Result<Self, RenderError> {
        let instance = process_instance()?.clone();

        // SAFETY: `instance` is valid for all the calls below (it is never destroyed); the
        // device and its objects are destroyed in Drop.
        unsafe {
            let physicals = instance.enumerate_physical_devices().map_err(vkerr("enumerate devices"))?;
            // Prefer a real GPU; fall back to whatever exists (lavapipe).
            let mut best: Option<(vk::PhysicalDevice, u32, i32)> = None;
            for pd in physicals {
                let props = instance.get_physical_device_properties(pd);
                let families = instance.get_physical_device_queue_family_properties(pd);
                let Some(family) = families
                    .iter()
                    .position(|f| f.queue_flags.contains(vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE))
                else {
                    continue;
                };
                let rank = match props.device_type {
                    vk::PhysicalDeviceType::DISCRETE_GPU => 3,
                    vk::PhysicalDeviceType::INTEGRATED_GPU => 2,
                    vk::PhysicalDeviceType::VIRTUAL_GPU => 1,
                    _ => 0,
                };
                if best.is_none_or(|b| rank > b.2) {
                    best = Some((pd, family as u32, rank));
                }
            }
            let Some((physical, family, _)) = best else {
                return Err(RenderError::NoVulkan("no Vulkan device with graphics and compute".into()));
            };
            let props = instance.get_physical_device_properties(physical);
            let device_name = CStr::from_ptr(props.device_name.as_ptr()).to_string_lossy().into_owned();
            let software = props.device_type == vk::PhysicalDeviceType::CPU;
            let memory_props = instance.get_physical_device_memory_properties(physical);

            let mut id_props = vk::PhysicalDeviceIDProperties::default();
            let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut id_props);
            instance.get_physical_device_properties2(physical, &mut props2);
            let device_uuid = id_props.device_uuid;
            let exported = output != FrameOutput::HostI420;
            if exported {
                if let Err(why) = export_support(&instance, physical) {
                    return Err(RenderError::NoExport(why));
                }
            }
            let timeline_why_not = if exported { timeline_support(&instance, physical).err() } else { None };
            let with_timeline = exported && timeline_why_not.is_none();
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
                [vk::DeviceQueueCreateInfo::default().queue_family_index(family).queue_priorities(&priorities)];
            let mut timeline_features = vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
            let mut device_info =
                vk::DeviceCreateInfo::default().queue_create_infos(&queue_info).enabled_extension_names(&extensions);
            if with_timeline {
                device_info = device_info.push_next(&mut timeline_features);
            }
            let device = match instance.create_device(physical, &device_info, None) {
                Ok(d) => d,
                Err(code) => {
                    return Err(RenderError::Vulkan { what: "create device", code });
                }
            };
            let queue = device.get_device_queue(family, 0);
            let timestamp_bits =
                instance.get_physical_device_queue_family_properties(physical)[family as usize].timestamp_valid_bits;
            tracing::info!(device = %device_name, software, ?output, "Vulkan device opened");
            if let Some(why) = &timeline_why_not {
                tracing::info!(why = %why, "no exported timeline semaphore; frames are handed over after their fence");
            }
            let external_fd = exported.then(|| ash::khr::external_memory_fd::Device::new(&instance, &device));
            let timeline_export =
                with_timeline.then(|| ash::khr::external_semaphore_fd::Device::new(&instance, &device));
            let mut gpu = Self::with_device(device, queue, family, memory_props, width, height)?;
            gpu.device_name = device_name;
            gpu.software = software;
            gpu.output = output;
            gpu.device_uuid = device_uuid;
            gpu.external_fd = external_fd;
            if let Some(export) = timeline_export {
                let mut kind = vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
                let mut exportable = vk::ExportSemaphoreCreateInfo::default()
                    .handle_types(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
                let info = vk::SemaphoreCreateInfo::default().push_next(&mut kind).push_next(&mut exportable);
                let semaphore = gpu.device.create_semaphore(&info, None).map_err(vkerr("create timeline semaphore"))?;
                gpu.timeline = Some(Timeline { semaphore, export, last_value: 0 });
            }
            gpu.background = background.map(|c| f32::from(c) / 255.0);
            if timestamp_bits > 0 {
                let pool = gpu
                    .device
                    .create_query_pool(
                        &vk::QueryPoolCreateInfo::default()
                            .query_type(vk::QueryType::TIMESTAMP)
                            .query_count(QUERIES_PER_FRAME * SLOTS as u32),
                        None,
                    )
                    .map_err(vkerr("create query pool"))?;
                gpu.timestamps = Some((pool, props.limits.timestamp_period));
            }
            gpu.build(model)?;
            Ok(gpu)
        }
    }

    /// Creates the per-device objects that do not depend on the mesh or shaders.
    unsafe fn with_device(
        device: ash::Device,
        queue: vk::Queue,
        family: u32,
        memory_props: vk::PhysicalDeviceMemoryProperties,
        width: u32,
        height: u32,
    ) -> Result<Self, RenderError> {
        let pool = device
            .create_command_pool(
                &vk::CommandPoolCreateInfo::default()
                    .queue_family_index(family)
                    .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                None,
            )
            .map_err(vkerr("create command pool"))?;
        let cmds = device
            .allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default().command_pool(pool).command_buffer_count(SLOTS as u32),
            )
            .map_err(vkerr("allocate command buffers"))?;
        let null_image =
            Image { image: vk::Image::null(), memory: vk::DeviceMemory::null(), view: vk::ImageView::null() };
        let null_buffer =
            || Buffer { buffer: vk::Buffer::null(), memory: vk::DeviceMemory::null(), size: 0, mapped: None };
        let mut slots = Vec::with_capacity(SLOTS);
        for cmd in cmds {
            // Pushed one by one so that Drop destroys the fences made before a failure.
            let fence = device.create_fence(&vk::FenceCreateInfo::default(), None).map_err(vkerr("create fence"))?;
            slots.push(Slot {
                cmd,
                fence,
                avatar_set: vk::DescriptorSet::null(),
                convert_set: vk::DescriptorSet::null(),
                uniform: null_buffer(),
                joints: null_buffer(),
                posed: null_buffer(),
                dims: null_buffer(),
                overlay: null_buffer(),
                overlay_generation: 0,
                output: null_buffer(),
                nv12: null_buffer(),
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
            color: null_image,
            depth: Image { image: vk::Image::null(), memory: vk::DeviceMemory::null(), view: vk::ImageView::null() },
            render_pass: vk::RenderPass::null(),
            framebuffer: vk::Framebuffer::null(),
            modules: Vec::new(),
            set_layouts: Vec::new(),
            layouts: Vec::new(),
            pipelines: Vec::new(),
            descriptor_pool: vk::DescriptorPool::null(),
            vertex: null_buffer(),
            index: null_buffer(),
            index_count: 0,
            opaque_index_count: 0,
            deltas: null_buffer(),
            vertex_count: 0,
            textures: Image { image: vk::Image::null(), memory: vk::DeviceMemory::null(), view: vk::ImageView::null() },
            sampler: vk::Sampler::null(),
            overlay: Vec::new(),
            overlay_generation: 0,
            overlay_on: false,
            background: [0.0; 3],
            timestamps: None,
            last_timings: None,
        })
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    pub fn is_software(&self) -> bool {
        self.software
    }

    /// GPU time of the last frame, if the device has timestamp queries.
    pub fn last_timings(&self) -> Option<GpuTimings> {
        self.last_timings
    }

    fn memory_type(&self, bits: u32, flags: vk::MemoryPropertyFlags) -> Result<u32, RenderError> {
        (0..self.memory_props.memory_type_count)
            .find(|&i| {
                bits & (1 << i) != 0 && self.memory_props.memory_types[i as usize].property_flags.contains(flags)
            })
            .ok_or(RenderError::NoMemoryType(format!("{flags:?}")))
    }

    unsafe fn buffer(&self, size: u64, usage: vk::BufferUsageFlags, host: bool) -> Result<Buffer, RenderError> {
        let buffer = self
            .device
            .create_buffer(&vk::BufferCreateInfo::default().size(size).usage(usage), None)
            .map_err(vkerr("create buffer"))?;
        let req = self.device.get_buffer_memory_requirements(buffer);
        let flags = if host {
            vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT
        } else {
            vk::MemoryPropertyFlags::DEVICE_LOCAL
        };
        // Device-local is preferred for vertex data, but any memory type works.
        let index = self.memory_type(req.memory_type_bits, flags).or_else(|e| {
            if host {
                Err(e)
            } else {
                self.memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::empty())
            }
        })?;
        let memory = self
            .device
            .allocate_memory(
                &vk::MemoryAllocateInfo::default().allocation_size(req.size).memory_type_index(index),
                None,
            )
            .map_err(vkerr("allocate buffer memory"))?;
        self.device.bind_buffer_memory(buffer, memory, 0).map_err(vkerr("bind buffer memory"))?;
        let mapped = if host {
            Some(
                self.device
                    .map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
                    .map_err(vkerr("map memory"))? as *mut u8,
            )
        } else {
            None
        };
        Ok(Buffer { buffer, memory, size, mapped })
    }

    /// A device buffer whose memory can be exported as an opaque fd: a dedicated allocation,
    /// device-local where the device has such memory. Returns it with its allocation size.
    unsafe fn exportable_buffer(&self, size: u64, usage: vk::BufferUsageFlags) -> Result<(Buffer, u64), RenderError> {
        let handle = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;
        let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(handle);
        let buffer = self
            .device
            .create_buffer(&vk::BufferCreateInfo::default().size(size).usage(usage).push_next(&mut external), None)
            .map_err(vkerr("create exportable buffer"))?;
        let req = self.device.get_buffer_memory_requirements(buffer);
        let index = self
            .memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::DEVICE_LOCAL)
            .or_else(|_| self.memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::empty()));
        let index = match index {
            Ok(i) => i,
            Err(e) => {
                self.device.destroy_buffer(buffer, None);
                return Err(e);
            }
        };
        // Always dedicated, so that an importer always passes the dedicated flag: a mismatch
        // is not refused by CUDA, it shows as corrupted stripes.
        let mut dedicated = vk::MemoryDedicatedAllocateInfo::default().buffer(buffer);
        let mut export = vk::ExportMemoryAllocateInfo::default().handle_types(handle);
        let info = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(index)
            .push_next(&mut export)
            .push_next(&mut dedicated);
        let memory = match self.device.allocate_memory(&info, None) {
            Ok(m) => m,
            Err(code) => {
                self.device.destroy_buffer(buffer, None);
                return Err(RenderError::Vulkan { what: "allocate exportable memory", code });
            }
        };
        let buf = Buffer { buffer, memory, size, mapped: None };
        self.device.bind_buffer_memory(buffer, memory, 0).map_err(vkerr("bind exportable memory"))?;
        Ok((buf, req.size))
    }

    /// A host-visible buffer filled with `bytes`.
    unsafe fn upload(&self, bytes: &[u8], usage: vk::BufferUsageFlags) -> Result<Buffer, RenderError> {
        let buf = self.buffer(bytes.len() as u64, usage, true)?;
        if let Some(ptr) = buf.mapped {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len());
        }
        Ok(buf)
    }

    unsafe fn image(
        &self,
        format: vk::Format,
        usage: vk::ImageUsageFlags,
        aspect: vk::ImageAspectFlags,
    ) -> Result<Image, RenderError> {
        self.image_array(format, usage, aspect, (self.width, self.height), 1)
    }

    /// A 2D image of `layers` layers (viewed as an array when there are several).
    unsafe fn image_array(
        &self,
        format: vk::Format,
        usage: vk::ImageUsageFlags,
        aspect: vk::ImageAspectFlags,
        (width, height): (u32, u32),
        layers: u32,
    ) -> Result<Image, RenderError> {
        let info = vk::ImageCreateInfo::default()
            .image_type(vk::ImageType::TYPE_2D)
            .format(format)
            .extent(vk::Extent3D { width, height, depth: 1 })
            .mip_levels(1)
            .array_layers(layers)
            .samples(vk::SampleCountFlags::TYPE_1)
            .tiling(vk::ImageTiling::OPTIMAL)
            .usage(usage)
            .initial_layout(vk::ImageLayout::UNDEFINED);
        let image = self.device.create_image(&info, None).map_err(vkerr("create image"))?;
        let req = self.device.get_image_memory_requirements(image);
        let index = self
            .memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::DEVICE_LOCAL)
            .or_else(|_| self.memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::empty()))?;
        let memory = self
            .device
            .allocate_memory(
                &vk::MemoryAllocateInfo::default().allocation_size(req.size).memory_type_index(index),
                None,
            )
            .map_err(vkerr("allocate image memory"))?;
        self.device.bind_image_memory(image, memory, 0).map_err(vkerr("bind image memory"))?;
        let view = self
            .device
            .create_image_view(
                &vk::ImageViewCreateInfo::default()
                    .image(image)
                    .view_type(if layers > 1 { vk::ImageViewType::TYPE_2D_ARRAY } else { vk::ImageViewType::TYPE_2D })
                    .format(format)
                    .subresource_range(vk::ImageSubresourceRange {
                        aspect_mask: aspect,
                        base_mip_level: 0,
                        level_count: 1,
                        base_array_layer: 0,
                        layer_count: layers,
                    }),
                None,
            )
            .map_err(vkerr("create image view"))?;
        Ok(Image { image, memory, view })
    }

    /// Uploads the model's textures into one array image (each layer `side`², scaled to fit;
    /// two layers at least, so the shader always sees an array), and makes the sampler.
    unsafe fn upload_textures(&mut self, textures: &[crate::model::Texture]) -> Result<(), RenderError> {
        let side =
            textures.iter().map(|t| t.width.max(t.height)).max().unwrap_or(1).clamp(1, crate::model::MAX_TEXTURE_SIDE);
        let layers = (textures.len() as u32).max(2);
        let layer_bytes = (side * side * 4) as usize;
        let mut bytes = vec![255u8; layer_bytes * layers as usize];
        for (i, t) in textures.iter().enumerate() {
            let fitted = if (t.width, t.height) == (side, side) {
                t.rgba.clone()
            } else {
                match image::RgbaImage::from_raw(t.width, t.height, t.rgba.clone()) {
                    Some(img) => {
                        image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle).into_raw()
                    }
                    None => continue,
                }
            };
            bytes[i * layer_bytes..(i + 1) * layer_bytes].copy_from_slice(&fitted);
        }
        let d = self.device.clone();
        self.textures = self.image_array(
            TEXTURE_FORMAT,
            vk::ImageUsageFlags::SAMPLED | vk::ImageUsageFlags::TRANSFER_DST,
            vk::ImageAspectFlags::COLOR,
            (side, side),
            layers,
        )?;
        let staging = self.upload(&bytes, vk::BufferUsageFlags::TRANSFER_SRC)?;
        let range = vk::ImageSubresourceRange {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            base_mip_level: 0,
            level_count: 1,
            base_array_layer: 0,
            layer_count: layers,
        };
        let (cmd, fence) = (self.slots[0].cmd, self.slots[0].fence);
        d.begin_command_buffer(
            cmd,
            &vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
        )
        .map_err(vkerr("begin commands"))?;
        let to_dst = [vk::ImageMemoryBarrier::default()
            .old_layout(vk::ImageLayout::UNDEFINED)
            .new_layout(vk::ImageLayout::TRANSFER_DST_OPTIMAL)
            .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .image(self.textures.image)
            .subresource_range(range)
            .dst_access_mask(vk::AccessFlags::TRANSFER_WRITE)];
        d.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TOP_OF_PIPE,
            vk::PipelineStageFlags::TRANSFER,
            vk::DependencyFlags::empty(),
            &[],
            &[],
            &to_dst,
        );
        let region = [vk::BufferImageCopy::default()
            .image_subresource(vk::ImageSubresourceLayers {
                aspect_mask: vk::ImageAspectFlags::COLOR,
                mip_level: 0,
                base_array_layer: 0,
                layer_count: layers,
            })
            .image_extent(vk::Extent3D { width: side, height: side, depth: 1 })];
        d.cmd_copy_buffer_to_image(
            cmd,
            staging.buffer,
            self.textures.image,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            &region,
        );
        let to_read = [vk::ImageMemoryBarrier::default()
            .old_layout(vk::ImageLayout::TRANSFER_DST_OPTIMAL)
            .new_layout(vk::ImageLayout::SHADER_READ_ONLY_OPTIMAL)
            .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .image(self.textures.image)
            .subresource_range(range)
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::SHADER_READ)];
        d.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::FRAGMENT_SHADER,
            vk::DependencyFlags::empty(),
            &[],
            &[],
            &to_read,
        );
        d.end_command_buffer(cmd).map_err(vkerr("end commands"))?;
        let cmds = [cmd];
        let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
        d.queue_submit(self.queue, &submit, fence).map_err(vkerr("submit texture upload"))?;
        let waited = d.wait_for_fences(&[fence], true, 10_000_000_000);
        d.reset_fences(&[fence]).map_err(vkerr("reset fence"))?;
        d.destroy_buffer(staging.buffer, None);
        d.free_memory(staging.memory, None);
        waited.map_err(vkerr("wait for texture upload"))?;
        self.sampler = d
            .create_sampler(
                &vk::SamplerCreateInfo::default()
                    .mag_filter(vk::Filter::LINEAR)
                    .min_filter(vk::Filter::LINEAR)
                    .address_mode_u(vk::SamplerAddressMode::REPEAT)
                    .address_mode_v(vk::SamplerAddressMode::REPEAT)
                    .address_mode_w(vk::SamplerAddressMode::CLAMP_TO_EDGE),
                None,
            )
            .map_err(vkerr("create sampler"))?;
        Ok(())
    }

    unsafe fn shader(&mut self, spv: &[u8]) -> Result<vk::ShaderModule, RenderError> {
        let words: Vec<u32> = spv.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let module = self
            .device
            .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None)
            .map_err(vkerr("create shader module"))?;
        self.modules.push(module);
        Ok(module)
    }

    unsafe fn build(&mut self, model: &Model) -> Result<(), RenderError> {
        let d = self.device.clone();
        self.color = self.image(
            COLOR_FORMAT,
            vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::SAMPLED | vk::ImageUsageFlags::TRANSFER_SRC,
            vk::ImageAspectFlags::COLOR,
        )?;
        self.depth =
            self.image(DEPTH_FORMAT, vk::ImageUsageFlags::DEPTH_STENCIL_ATTACHMENT, vk::ImageAspectFlags::DEPTH)?;

        // Render pass: clear, draw, leave the colour image ready for the compute pass to read.
        let attachments = [
            vk::AttachmentDescription::default()
                .format(COLOR_FORMAT)
                .samples(vk::SampleCountFlags::TYPE_1)
                .load_op(vk::AttachmentLoadOp::CLEAR)
                .store_op(vk::AttachmentStoreOp::STORE)
                .initial_layout(vk::ImageLayout::UNDEFINED)
                .final_layout(vk::ImageLayout::SHADER_READ_ONLY_OPTIMAL),
            vk::AttachmentDescription::default()
                .format(DEPTH_FORMAT)
                .samples(vk::SampleCountFlags::TYPE_1)
                .load_op(vk::AttachmentLoadOp::CLEAR)
                .store_op(vk::AttachmentStoreOp::DONT_CARE)
                .initial_layout(vk::ImageLayout::UNDEFINED)
                .final_layout(vk::ImageLayout::DEPTH_STENCIL_ATTACHMENT_OPTIMAL),
        ];
        let color_ref = [vk::AttachmentReference { attachment: 0, layout: vk::ImageLayout::COLOR_ATTACHMENT_OPTIMAL }];
        let depth_ref =
            vk::AttachmentReference { attachment: 1, layout: vk::ImageLayout::DEPTH_STENCIL_ATTACHMENT_OPTIMAL };
        let subpass = [vk::SubpassDescription::default()
            .pipeline_bind_point(vk::PipelineBindPoint::GRAPHICS)
            .color_attachments(&color_ref)
            .depth_stencil_attachment(&depth_ref)];
        let dependencies = [
            // The previous frame (possibly still in flight, from another slot) has read the
            // colour image in its convert pass and finished with the depth image before this
            // frame clears them.
            vk::SubpassDependency::default()
                .src_subpass(vk::SUBPASS_EXTERNAL)
                .dst_subpass(0)
                .src_stage_mask(vk::PipelineStageFlags::COMPUTE_SHADER | vk::PipelineStageFlags::LATE_FRAGMENT_TESTS)
                .dst_stage_mask(
                    vk::PipelineStageFlags::COLOR_ATTACHMENT_OUTPUT
                        | vk::PipelineStageFlags::EARLY_FRAGMENT_TESTS
                        | vk::PipelineStageFlags::LATE_FRAGMENT_TESTS,
                )
                .src_access_mask(vk::AccessFlags::SHADER_READ | vk::AccessFlags::DEPTH_STENCIL_ATTACHMENT_WRITE)
                .dst_access_mask(
                    vk::AccessFlags::COLOR_ATTACHMENT_WRITE | vk::AccessFlags::DEPTH_STENCIL_ATTACHMENT_WRITE,
                ),
            // Colour writes are visible to the compute shader.
            vk::SubpassDependency::default()
                .src_subpass(0)
                .dst_subpass(vk::SUBPASS_EXTERNAL)
                .src_stage_mask(vk::PipelineStageFlags::COLOR_ATTACHMENT_OUTPUT)
                .dst_stage_mask(vk::PipelineStageFlags::COMPUTE_SHADER)
                .src_access_mask(vk::AccessFlags::COLOR_ATTACHMENT_WRITE)
                .dst_access_mask(vk::AccessFlags::SHADER_READ),
        ];
        self.render_pass = d
            .create_render_pass(
                &vk::RenderPassCreateInfo::default()
                    .attachments(&attachments)
                    .subpasses(&subpass)
                    .dependencies(&dependencies),
                None,
            )
            .map_err(vkerr("create render pass"))?;
        let views = [self.color.view, self.depth.view];
        self.framebuffer = d
            .create_framebuffer(
                &vk::FramebufferCreateInfo::default()
                    .render_pass(self.render_pass)
                    .attachments(&views)
                    .width(self.width)
                    .height(self.height)
                    .layers(1),
                None,
            )
            .map_err(vkerr("create framebuffer"))?;

        // Buffers.
        let floats = |v: &crate::model::Vertex| {
            let mut out = [0.0f32; VERTEX_FLOATS];
            out[0..3].copy_from_slice(&v.position);
            out[3..6].copy_from_slice(&v.normal);
            out[6..9].copy_from_slice(&v.color);
            out[9..13].copy_from_slice(&v.joints.map(|j| j as f32));
            out[13..17].copy_from_slice(&v.weights);
            out[17..19].copy_from_slice(&v.uv);
            out[19] = v.texture.map_or(-1.0, |t| t as f32);
            out[20] = v.alpha_cutoff;
            out
        };
        let vbytes: Vec<u8> = model.vertices.iter().flat_map(floats).flat_map(f32::to_le_bytes).collect();
        // Opaque triangles first (drawn without discard, so hidden surfaces are not shaded),
        // then the alpha-masked ones; each group keeps the model's order.
        let masked =
            |tri: &[u32]| tri.iter().any(|&i| model.vertices.get(i as usize).is_some_and(|v| v.alpha_cutoff > 0.0));
        let (opaque, cut): (Vec<&[u32]>, Vec<&[u32]>) = model.indices.chunks(3).partition(|t| !masked(t));
        self.opaque_index_count = (opaque.len() * 3) as u32;
        let ibytes: Vec<u8> = opaque.into_iter().chain(cut).flatten().flat_map(|i| i.to_le_bytes()).collect();
        // Also read as storage by the pose pass.
        self.vertex =
            self.upload(&vbytes, vk::BufferUsageFlags::VERTEX_BUFFER | vk::BufferUsageFlags::STORAGE_BUFFER)?;
        self.vertex_count = model.vertices.len() as u32;
        self.index = self.upload(&ibytes, vk::BufferUsageFlags::INDEX_BUFFER)?;
        self.index_count = model.indices.len() as u32;
        // Never empty: a storage buffer needs a size.
        let mut dbytes: Vec<u8> =
            model.targets.iter().flat_map(|t| t.deltas.iter().flatten()).flat_map(|f| f.to_le_bytes()).collect();
        dbytes.resize(dbytes.len().max(16), 0);
        self.deltas = self.upload(&dbytes, vk::BufferUsageFlags::STORAGE_BUFFER)?;
        self.upload_textures(&model.textures)?;
        let storage = vk::BufferUsageFlags::STORAGE_BUFFER;
        let frame_pixels = u64::from(self.width) * u64::from(self.height);
        for i in 0..SLOTS {
            // Assigned one by one so that Drop frees what was made before a failure.
            self.slots[i].posed = self.buffer((model.vertices.len().max(1) * 32) as u64, storage, false)?;
            self.slots[i].joints = self.buffer((model.palette.len().max(1) * 64) as u64, storage, true)?;
            self.slots[i].uniform =
                self.buffer((FRAME_UNIFORM_WORDS * 4) as u64, vk::BufferUsageFlags::UNIFORM_BUFFER, true)?;
            self.slots[i].dims = self.buffer(DIMS_WORDS as u64 * 4, vk::BufferUsageFlags::UNIFORM_BUFFER, true)?;
            self.slots[i].overlay = self.buffer(frame_pixels * 4, storage, true)?;
            // NV12 and I420 frames have the same size.
            let frame_bytes = crate::i420_len(self.width, self.height) as u64;
            if self.output != FrameOutput::ExportedNv12 {
                let usage = storage | vk::BufferUsageFlags::TRANSFER_DST;
                self.slots[i].output = self.buffer(frame_bytes, usage, true)?;
            }
            if self.output != FrameOutput::HostI420 {
                let (nv12, allocation) =
                    self.exportable_buffer(frame_bytes, storage | vk::BufferUsageFlags::TRANSFER_SRC)?;
                self.slots[i].nv12 = nv12;
                self.slots[i].nv12_allocation = allocation;
            }
        }

        // Descriptor layouts and sets.
        // The avatar set serves the pose pass (compute) and the avatar pass (graphics).
        let all = vk::ShaderStageFlags::VERTEX | vk::ShaderStageFlags::FRAGMENT | vk::ShaderStageFlags::COMPUTE;
        let avatar_bindings = [
            vk::DescriptorSetLayoutBinding::default()
                .binding(0)
                .descriptor_type(vk::DescriptorType::UNIFORM_BUFFER)
                .descriptor_count(1)
                .stage_flags(all),
            vk::DescriptorSetLayoutBinding::default()
                .binding(1)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE),
            vk::DescriptorSetLayoutBinding::default()
                .binding(2)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE),
            vk::DescriptorSetLayoutBinding::default()
                .binding(3)
                .descriptor_type(vk::DescriptorType::SAMPLED_IMAGE)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::FRAGMENT),
            vk::DescriptorSetLayoutBinding::default()
                .binding(4)
                .descriptor_type(vk::DescriptorType::SAMPLER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::FRAGMENT),
            vk::DescriptorSetLayoutBinding::default()
                .binding(5)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::VERTEX | vk::ShaderStageFlags::COMPUTE),
            vk::DescriptorSetLayoutBinding::default()
                .binding(6)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE),
        ];
        let convert_bindings = [
            vk::DescriptorSetLayoutBinding::default()
                .binding(0)
                .descriptor_type(vk::DescriptorType::SAMPLED_IMAGE)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE),
            vk::DescriptorSetLayoutBinding::default()
                .binding(1)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE),
            vk::DescriptorSetLayoutBinding::default()
                .binding(2)
                .descriptor_type(vk::DescriptorType::UNIFORM_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE),
            vk::DescriptorSetLayoutBinding::default()
                .binding(3)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE),
            vk::DescriptorSetLayoutBinding::default()
                .binding(4)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE),
        ];
        for bindings in [&avatar_bindings[..], &convert_bindings[..]] {
            let layout = d
                .create_descriptor_set_layout(&vk::DescriptorSetLayoutCreateInfo::default().bindings(bindings), None)
                .map_err(vkerr("create descriptor set layout"))?;
            self.set_layouts.push(layout);
            let set_layouts = [layout];
            let pl = d
                .create_pipeline_layout(&vk::PipelineLayoutCreateInfo::default().set_layouts(&set_layouts), None)
                .map_err(vkerr("create pipeline layout"))?;
            self.layouts.push(pl);
        }
        // Per slot: an avatar set and a convert set.
        let per_slot = |count: u32| count * SLOTS as u32;
        let sizes = [
            vk::DescriptorPoolSize { ty: vk::DescriptorType::UNIFORM_BUFFER, descriptor_count: per_slot(2) },
            vk::DescriptorPoolSize { ty: vk::DescriptorType::SAMPLED_IMAGE, descriptor_count: per_slot(2) },
            vk::DescriptorPoolSize { ty: vk::DescriptorType::SAMPLER, descriptor_count: per_slot(1) },
            vk::DescriptorPoolSize { ty: vk::DescriptorType::STORAGE_BUFFER, descriptor_count: per_slot(7) },
        ];
        self.descriptor_pool = d
            .create_descriptor_pool(
                &vk::DescriptorPoolCreateInfo::default().max_sets(per_slot(2)).pool_sizes(&sizes),
                None,
            )
            .map_err(vkerr("create descriptor pool"))?;
        for i in 0..SLOTS {
            let sets = d
                .allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default()
                        .descriptor_pool(self.descriptor_pool)
                        .set_layouts(&self.set_layouts),
                )
                .map_err(vkerr("allocate descriptor sets"))?;
            (self.slots[i].avatar_set, self.slots[i].convert_set) = (sets[0], sets[1]);
            self.write_slot_sets(&self.slots[i]);
        }
        self.build_pipelines()
    }

    /// Points a slot's descriptor sets at its own buffers and the shared images.
    unsafe fn write_slot_sets(&self, slot: &Slot) {
        let d = &self.device;
        let ubo = [vk::DescriptorBufferInfo { buffer: slot.uniform.buffer, offset: 0, range: vk::WHOLE_SIZE }];
        let img = [vk::DescriptorImageInfo {
            sampler: vk::Sampler::null(),
            image_view: self.color.view,
            image_layout: vk::ImageLayout::SHADER_READ_ONLY_OPTIMAL,
        }];
        // The pass writes only the outputs its `dims` ask for; an unused binding points at the
        // other output's buffer so that every binding is valid.
        let (i420, nv12) = match (slot.output.buffer, slot.nv12.buffer) {
            (out, nv12) if nv12 == vk::Buffer::null() => (out, out),
            (out, nv12) if out == vk::Buffer::null() => (nv12, nv12),
            pair => pair,
        };
        let out = [vk::DescriptorBufferInfo { buffer: i420, offset: 0, range: vk::WHOLE_SIZE }];
        let nv12_info = [vk::DescriptorBufferInfo { buffer: nv12, offset: 0, range: vk::WHOLE_SIZE }];
        let dims_info = [vk::DescriptorBufferInfo { buffer: slot.dims.buffer, offset: 0, range: vk::WHOLE_SIZE }];
        let deltas = [vk::DescriptorBufferInfo { buffer: self.deltas.buffer, offset: 0, range: vk::WHOLE_SIZE }];
        let joints = [vk::DescriptorBufferInfo { buffer: slot.joints.buffer, offset: 0, range: vk::WHOLE_SIZE }];
        let overlay = [vk::DescriptorBufferInfo { buffer: slot.overlay.buffer, offset: 0, range: vk::WHOLE_SIZE }];
        let posed = [vk::DescriptorBufferInfo { buffer: slot.posed.buffer, offset: 0, range: vk::WHOLE_SIZE }];
        let rest = [vk::DescriptorBufferInfo { buffer: self.vertex.buffer, offset: 0, range: vk::WHOLE_SIZE }];
        let textures = [vk::DescriptorImageInfo {
            sampler: vk::Sampler::null(),
            image_view: self.textures.view,
            image_layout: vk::ImageLayout::SHADER_READ_ONLY_OPTIMAL,
        }];
        let sampler = [vk::DescriptorImageInfo {
            sampler: self.sampler,
            image_view: vk::ImageView::null(),
            image_layout: vk::ImageLayout::UNDEFINED,
        }];
        let writes = [
            vk::WriteDescriptorSet::default()
                .dst_set(slot.avatar_set)
                .dst_binding(0)
                .descriptor_type(vk::DescriptorType::UNIFORM_BUFFER)
                .buffer_info(&ubo),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.avatar_set)
                .dst_binding(1)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&deltas),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.avatar_set)
                .dst_binding(2)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&joints),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.avatar_set)
                .dst_binding(3)
                .descriptor_type(vk::DescriptorType::SAMPLED_IMAGE)
                .image_info(&textures),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.avatar_set)
                .dst_binding(4)
                .descriptor_type(vk::DescriptorType::SAMPLER)
                .image_info(&sampler),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.avatar_set)
                .dst_binding(5)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&posed),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.avatar_set)
                .dst_binding(6)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&rest),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.convert_set)
                .dst_binding(0)
                .descriptor_type(vk::DescriptorType::SAMPLED_IMAGE)
                .image_info(&img),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.convert_set)
                .dst_binding(1)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&out),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.convert_set)
                .dst_binding(2)
                .descriptor_type(vk::DescriptorType::UNIFORM_BUFFER)
                .buffer_info(&dims_info),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.convert_set)
                .dst_binding(3)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&overlay),
            vk::WriteDescriptorSet::default()
                .dst_set(slot.convert_set)
                .dst_binding(4)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&nv12_info),
        ];
        d.update_descriptor_sets(&writes, &[]);
    }

    unsafe fn build_pipelines(&mut self) -> Result<(), RenderError> {
        let d = self.device.clone();
        let avatar = self.shader(AVATAR_SPV)?;
        let convert = self.shader(CONVERT_SPV)?;
        let pose = self.shader(POSE_SPV)?;
        let stages = |fragment: &'static std::ffi::CStr| {
            [
                vk::PipelineShaderStageCreateInfo::default()
                    .stage(vk::ShaderStageFlags::VERTEX)
                    .module(avatar)
                    .name(c"vs_main"),
                vk::PipelineShaderStageCreateInfo::default()
                    .stage(vk::ShaderStageFlags::FRAGMENT)
                    .module(avatar)
                    .name(fragment),
            ]
        };
        let (opaque_stages, masked_stages) = (stages(c"fs_main"), stages(c"fs_masked"));
        let stride = (VERTEX_FLOATS * 4) as u32;
        let binding =
            [vk::VertexInputBindingDescription { binding: 0, stride, input_rate: vk::VertexInputRate::VERTEX }];
        // Position, normal, colour (vec3 each), joints and weights (vec4 each), uv and material (vec2 each).
        let (vec2, vec3, vec4) =
            (vk::Format::R32G32_SFLOAT, vk::Format::R32G32B32_SFLOAT, vk::Format::R32G32B32A32_SFLOAT);
        let attrs: Vec<vk::VertexInputAttributeDescription> =
            [(vec3, 0), (vec3, 12), (vec3, 24), (vec4, 36), (vec4, 52), (vec2, 68), (vec2, 76)]
                .iter()
                .enumerate()
                .map(|(location, &(format, offset))| vk::VertexInputAttributeDescription {
                    location: location as u32,
                    binding: 0,
                    format,
                    offset,
                })
                .collect();
        let vertex_input = vk::PipelineVertexInputStateCreateInfo::default()
            .vertex_binding_descriptions(&binding)
            .vertex_attribute_descriptions(&attrs);
        let assembly =
            vk::PipelineInputAssemblyStateCreateInfo::default().topology(vk::PrimitiveTopology::TRIANGLE_LIST);
        let viewport = [vk::Viewport {
            x: 0.0,
            y: 0.0,
            width: self.width as f32,
            height: self.height as f32,
            min_depth: 0.0,
            max_depth: 1.0,
        }];
        let scissor = [vk::Rect2D { offset: vk::Offset2D { x: 0, y: 0 }, extent: self.extent() }];
        let viewport_state = vk::PipelineViewportStateCreateInfo::default().viewports(&viewport).scissors(&scissor);
        let raster = vk::PipelineRasterizationStateCreateInfo::default()
            .polygon_mode(vk::PolygonMode::FILL)
            .cull_mode(vk::CullModeFlags::NONE)
            .line_width(1.0);
        let multisample =
            vk::PipelineMultisampleStateCreateInfo::default().rasterization_samples(vk::SampleCountFlags::TYPE_1);
        let depth = vk::PipelineDepthStencilStateCreateInfo::default()
            .depth_test_enable(true)
            .depth_write_enable(true)
            .depth_compare_op(vk::CompareOp::LESS);
        let blend_attachment =
            [vk::PipelineColorBlendAttachmentState::default().color_write_mask(vk::ColorComponentFlags::RGBA)];
        let blend = vk::PipelineColorBlendStateCreateInfo::default().attachments(&blend_attachment);
        let graphics = |stages| {
            vk::GraphicsPipelineCreateInfo::default()
                .stages(stages)
                .vertex_input_state(&vertex_input)
                .input_assembly_state(&assembly)
                .viewport_state(&viewport_state)
                .rasterization_state(&raster)
                .multisample_state(&multisample)
                .depth_stencil_state(&depth)
                .color_blend_state(&blend)
                .layout(self.layouts[0])
                .render_pass(self.render_pass)
                .subpass(0)
        };
        // pipelines[0]: opaque triangles, pipelines[1]: alpha-masked ones.
        let graphics = [graphics(&opaque_stages), graphics(&masked_stages)];
        let pipelines = d
            .create_graphics_pipelines(vk::PipelineCache::null(), &graphics, None)
            .map_err(|(_, code)| RenderError::Vulkan { what: "create graphics pipeline", code })?;
        self.pipelines.extend(pipelines);
        // pipelines[2]: convert, pipelines[3]: pose.
        let compute_stage = |module| {
            vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main")
        };
        let compute = [
            vk::ComputePipelineCreateInfo::default().stage(compute_stage(convert)).layout(self.layouts[1]),
            vk::ComputePipelineCreateInfo::default().stage(compute_stage(pose)).layout(self.layouts[0]),
        ];
        let pipelines = d
            .create_compute_pipelines(vk::PipelineCache::null(), &compute, None)
            .map_err(|(_, code)| RenderError::Vulkan { what: "create compute pipeline", code })?;
        self.pipelines.extend(pipelines);
        Ok(())
    }

    /// Draws `rgba` (premultiplied, frame-sized) over the picture from the next frame on;
    /// `None` draws nothing over it. A buffer of the wrong size is ignored.
    pub fn set_overlay(&mut self, rgba: Option<&[u8]>) {
        let want = self.width as usize * self.height as usize * 4;
        match rgba {
            Some(bytes) if bytes.len() == want => {
                // Kept here and copied into each slot at its next frame: the slots in flight
                // are the GPU's until their fences signal.
                self.overlay.clear();
                self.overlay.extend_from_slice(bytes);
                self.overlay_generation += 1;
                self.overlay_on = true;
            }
            Some(bytes) => tracing::warn!(len = bytes.len(), want, "overlay of the wrong size ignored"),
            None => self.overlay_on = false,
        }
    }

    /// Background from the next frame on.
    pub fn set_background(&mut self, background: [u8; 3]) {
        self.background = background.map(|c| f32::from(c) / 255.0);
    }

    fn extent(&self) -> vk::Extent2D {
        vk::Extent2D { width: self.width, height: self.height }
    }

    /// Records a compute dispatch of `pipeline` with `set` bound.
    ///
    /// # Safety
    /// The command buffer is recording; the handles are this renderer's.
    unsafe fn dispatch(
        &self,
        cmd: vk::CommandBuffer,
        pipeline: vk::Pipeline,
        layout: vk::PipelineLayout,
        set: vk::DescriptorSet,
        groups: [u32; 3],
    ) {
        let d = &self.device;
        d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipeline);
        d.cmd_bind_descriptor_sets(cmd, vk::PipelineBindPoint::COMPUTE, layout, 0, &[set], &[]);
        d.cmd_dispatch(cmd, groups[0], groups[1], groups[2]);
    }

    /// Records a barrier: compute-shader writes to `buffer` are visible to `access` at `stage`.
    ///
    /// # Safety
    /// The command buffer is recording; `buffer` is this renderer's.
    unsafe fn after_compute_writes(
        &self,
        cmd: vk::CommandBuffer,
        buffer: vk::Buffer,
        stage: vk::PipelineStageFlags,
        access: vk::AccessFlags,
    ) {
        let src = (vk::PipelineStageFlags::COMPUTE_SHADER, vk::AccessFlags::SHADER_WRITE);
        self.buffer_barrier(cmd, buffer, src, (stage, access), None);
    }

    /// Records a barrier on `buffer` from `src` (stage, access) to `dst`, moving it between queue
    /// families when `families` says so.
    ///
    /// # Safety
    /// The command buffer is recording; `buffer` is this renderer's.
    unsafe fn buffer_barrier(
        &self,
        cmd: vk::CommandBuffer,
        buffer: vk::Buffer,
        src: (vk::PipelineStageFlags, vk::AccessFlags),
        dst: (vk::PipelineStageFlags, vk::AccessFlags),
        families: Option<(u32, u32)>,
    ) {
        let (from, to) = families.unwrap_or((vk::QUEUE_FAMILY_IGNORED, vk::QUEUE_FAMILY_IGNORED));
        let barrier = [vk::BufferMemoryBarrier::default()
            .src_access_mask(src.1)
            .dst_access_mask(dst.1)
            .src_queue_family_index(from)
            .dst_queue_family_index(to)
            .buffer(buffer)
            .offset(0)
            .size(vk::WHOLE_SIZE)];
        self.device.cmd_pipeline_barrier(cmd, src.0, dst.0, vk::DependencyFlags::empty(), &[], &barrier, &[]);
    }

    /// Records and submits one frame into a free slot, without waiting for it. `uniforms`: the
    /// `Frame` block; `palette`: one skinning matrix per palette entry; `level`: picture level,
    /// 1 normal … 0 black. Read it back with [`Gpu::wait_oldest`].
    pub fn submit(
        &mut self,
        uniforms: &[u32; FRAME_UNIFORM_WORDS],
        palette: &[crate::math::Mat4],
        level: f32,
    ) -> Result<(), RenderError> {
        if self.broken {
            return Err(RenderError::Broken);
        }
        let Some(index) = self.next_free_slot() else {
            return Err(RenderError::Busy);
        };
        if self.slots[index].unreclaimed {
            self.reclaim(index)?;
        }
        let d = &self.device;
        let slot = &self.slots[index];
        let (cmd, query_base) = (slot.cmd, index as u32 * QUERIES_PER_FRAME);
        // SAFETY: all handles are valid and owned by self; the slot is not in flight (its fence
        // was waited for when it was read back), so its command buffer and buffers are ours;
        // mapped pointers cover their whole allocations and every copy is bounded by them.
        unsafe {
            let write = |buffer: &Buffer, bytes: &[u8]| {
                if let Some(ptr) = buffer.mapped {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len().min(buffer.size as usize));
                }
            };
            write(&slot.uniform, &uniforms.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>());
            let outputs = match self.output {
                FrameOutput::HostI420 => WRITE_I420,
                FrameOutput::ExportedNv12 | FrameOutput::ExportedNv12WithReadback => WRITE_NV12,
            };
            let dims: [u32; DIMS_WORDS] =
                [self.width, self.height, u32::from(self.overlay_on), level.to_bits(), outputs];
            write(&slot.dims, &dims.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>());
            write(&slot.joints, &palette.iter().flatten().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>());
            if self.overlay_on && slot.overlay_generation != self.overlay_generation {
                write(&slot.overlay, &self.overlay);
                self.slots[index].overlay_generation = self.overlay_generation;
            }
            let slot = &self.slots[index];
            d.reset_command_buffer(cmd, vk::CommandBufferResetFlags::empty()).map_err(vkerr("reset commands"))?;
            d.begin_command_buffer(
                cmd,
                &vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )
            .map_err(vkerr("begin commands"))?;
            if let Some((pool, _)) = self.timestamps {
                d.cmd_reset_query_pool(cmd, pool, query_base, QUERIES_PER_FRAME);
                d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::TOP_OF_PIPE, pool, query_base);
            }
            // Pose pass: every vertex morphed and skinned once, before the avatar pass reads it.
            self.dispatch(
                cmd,
                self.pipelines[3],
                self.layouts[0],
                slot.avatar_set,
                [self.vertex_count.div_ceil(64), 1, 1],
            );
            self.after_compute_writes(
                cmd,
                slot.posed.buffer,
                vk::PipelineStageFlags::VERTEX_SHADER,
                vk::AccessFlags::SHADER_READ,
            );
            // The background bytes are display values, like everything in the UNORM target.
            let [r, g, b] = self.background.map(|c| c * level);
            let clear = [
                vk::ClearValue { color: vk::ClearColorValue { float32: [r, g, b, 1.0] } },
                vk::ClearValue { depth_stencil: vk::ClearDepthStencilValue { depth: 1.0, stencil: 0 } },
            ];
            d.cmd_begin_render_pass(
                cmd,
                &vk::RenderPassBeginInfo::default()
                    .render_pass(self.render_pass)
                    .framebuffer(self.framebuffer)
                    .render_area(vk::Rect2D { offset: vk::Offset2D { x: 0, y: 0 }, extent: self.extent() })
                    .clear_values(&clear),
                vk::SubpassContents::INLINE,
            );
            d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::GRAPHICS, self.pipelines[0]);
            d.cmd_bind_descriptor_sets(
                cmd,
                vk::PipelineBindPoint::GRAPHICS,
                self.layouts[0],
                0,
                &[slot.avatar_set],
                &[],
            );
            d.cmd_bind_vertex_buffers(cmd, 0, &[self.vertex.buffer], &[0]);
            d.cmd_bind_index_buffer(cmd, self.index.buffer, 0, vk::IndexType::UINT32);
            d.cmd_draw_indexed(cmd, self.opaque_index_count, 1, 0, 0, 0);
            if self.index_count > self.opaque_index_count {
                d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::GRAPHICS, self.pipelines[1]);
                let masked = self.index_count - self.opaque_index_count;
                d.cmd_draw_indexed(cmd, masked, 1, self.opaque_index_count, 0, 0);
            }
            d.cmd_end_render_pass(cmd);
            if let Some((pool, _)) = self.timestamps {
                d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::BOTTOM_OF_PIPE, pool, query_base + 1);
            }

            // The exported buffer comes back from the external consumer (CUDA), which read it
            // after this slot's fence; its old contents do not matter.
            let external = (vk::QUEUE_FAMILY_EXTERNAL, self.family);
            let compute_write = (vk::PipelineStageFlags::COMPUTE_SHADER, vk::AccessFlags::SHADER_WRITE);
            if self.output != FrameOutput::HostI420 {
                let top = (vk::PipelineStageFlags::TOP_OF_PIPE, vk::AccessFlags::empty());
                self.buffer_barrier(cmd, slot.nv12.buffer, top, compute_write, Some(external));
            }
            let groups = [(self.width / 8).div_ceil(8), (self.height / 2).div_ceil(8), 1];
            self.dispatch(cmd, self.pipelines[2], self.layouts[1], slot.convert_set, groups);
            if let Some((pool, _)) = self.timestamps {
                d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::BOTTOM_OF_PIPE, pool, query_base + 2);
            }
            let host_read = (vk::PipelineStageFlags::HOST, vk::AccessFlags::HOST_READ);
            let transfer_read = (vk::PipelineStageFlags::TRANSFER, vk::AccessFlags::TRANSFER_READ);
            if self.output == FrameOutput::ExportedNv12WithReadback {
                // The Vulkan readback that the imported copy is compared with.
                self.buffer_barrier(cmd, slot.nv12.buffer, compute_write, transfer_read, None);
                let region = [vk::BufferCopy { src_offset: 0, dst_offset: 0, size: slot.output.size }];
                d.cmd_copy_buffer(cmd, slot.nv12.buffer, slot.output.buffer, &region);
                let transfer_write = (vk::PipelineStageFlags::TRANSFER, vk::AccessFlags::TRANSFER_WRITE);
                self.buffer_barrier(cmd, slot.output.buffer, transfer_write, host_read, None);
            }
            match self.output {
                FrameOutput::HostI420 => self.after_compute_writes(cmd, slot.output.buffer, host_read.0, host_read.1),
                FrameOutput::ExportedNv12 | FrameOutput::ExportedNv12WithReadback => {
                    // Released to the external consumer, which reads it after the fence.
                    let bottom = (vk::PipelineStageFlags::BOTTOM_OF_PIPE, vk::AccessFlags::empty());
                    let src = if self.output == FrameOutput::ExportedNv12 { compute_write } else { transfer_read };
                    self.buffer_barrier(cmd, slot.nv12.buffer, src, bottom, Some((external.1, external.0)));
                }
            }
            d.end_command_buffer(cmd).map_err(vkerr("end commands"))?;
            let cmds = [cmd];
            let mut submit = vk::SubmitInfo::default().command_buffers(&cmds);
            let value = self.timeline.as_ref().map_or(0, |t| t.last_value + 1);
            let (semaphores, values) = match &self.timeline {
                Some(t) => (vec![t.semaphore], vec![value]),
                None => (Vec::new(), Vec::new()),
            };
            let mut signal = vk::TimelineSemaphoreSubmitInfo::default().signal_semaphore_values(&values);
            if self.timeline.is_some() {
                submit = submit.signal_semaphores(&semaphores).push_next(&mut signal);
            }
            d.queue_submit(self.queue, &[submit], slot.fence).map_err(vkerr("submit"))?;
            if let Some(t) = &mut self.timeline {
                t.last_value = value;
            }
            self.slots[index].timeline_value = value;
        }
        self.in_flight.push_back(index);
        Ok(())
    }

    /// Frames submitted and not yet read back.
    /// From now on every call fails as after a lost device (fault drills).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// The slot the next [`Gpu::submit`] writes.
    pub fn next_free_slot(&self) -> Option<usize> {
        (0..SLOTS).find(|i| !self.in_flight.contains(i))
    }

    pub fn frames_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes the oldest frame in flight and writes what is read back of it into `out` (resized;
    /// empty when nothing is read back). Returns its slot, whose exported buffer holds it until
    /// the slot's next frame is submitted; None when no frame is in flight.
    ///
    /// Waits for the frame's fence, except with `hand_over_early` on an exported output with a
    /// timeline semaphore and nothing to read back: then the frame may still be drawing, and
    /// the consumer waits for [`Gpu::timeline_value`] of the slot instead.
    pub fn wait_oldest(&mut self, out: &mut Vec<u8>, hand_over_early: bool) -> Result<Option<usize>, RenderError> {
        if self.broken {
            return Err(RenderError::Broken);
        }
        let Some(&index) = self.in_flight.front() else { return Ok(None) };
        self.in_flight.pop_front();
        if hand_over_early && self.timeline.is_some() && self.output == FrameOutput::ExportedNv12 {
            self.slots[index].unreclaimed = true;
            out.clear();
            return Ok(Some(index));
        }
        self.reclaim(index)?;
        let slot = &self.slots[index];
        let len = slot.output.size as usize;
        out.resize(len, 0);
        if let Some(ptr) = slot.output.mapped {
            // SAFETY: after the slot's fence (and the barrier to HOST_READ in its commands) its
            // mapped output is the host's to read, `len` bytes long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, out.as_mut_ptr(), len) };
        }
        Ok(Some(index))
    }

    /// Waits for `index`'s fence and reads its GPU timings: the slot is the CPU's again.
    fn reclaim(&mut self, index: usize) -> Result<(), RenderError> {
        let d = &self.device;
        let fence = self.slots[index].fence;
        // SAFETY: the fence and query pool belong to this slot, which was submitted.
        unsafe {
            if let Err(code) = d.wait_for_fences(&[fence], true, 5_000_000_000) {
                // Lost or hung: the slot may still be in use, so it is never reused.
                self.broken = true;
                return Err(RenderError::Vulkan { what: "wait for frame", code });
            }
            d.reset_fences(&[fence]).map_err(vkerr("reset fence"))?;
            self.slots[index].unreclaimed = false;
            if let Some((pool, period_ns)) = self.timestamps {
                let mut ticks = [0u64; QUERIES_PER_FRAME as usize];
                let first = index as u32 * QUERIES_PER_FRAME;
                let read = d.get_query_pool_results(pool, first, &mut ticks, vk::QueryResultFlags::TYPE_64);
                self.last_timings = read.ok().map(|_| {
                    let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 * f64::from(period_ns) / 1e6;
                    GpuTimings { render_ms: ms(ticks[0], ticks[1]), convert_ms: ms(ticks[1], ticks[2]) }
                });
            }
        }
        Ok(())
    }

    /// The timeline value that signals once `slot`'s last frame is written; None without an
    /// exported timeline semaphore.
    pub fn timeline_value(&self, slot: usize) -> Option<u64> {
        self.timeline.as_ref().and(self.slots.get(slot)).map(|s| s.timeline_value)
    }

    /// Exports every slot's NV12 buffer as an opaque fd (a new fd per call; the importer owns
    /// it). Fails unless the renderer was made with an exported output.
    pub fn export_ring(&self) -> Result<ExportedRing, RenderError> {
        let Some(external_fd) = &self.external_fd else {
            return Err(RenderError::NoExport("the renderer was made for host I420 frames".into()));
        };
        let mut slots = Vec::with_capacity(SLOTS);
        for slot in &self.slots {
            let info = vk::MemoryGetFdInfoKHR::default()
                .memory(slot.nv12.memory)
                .handle_type(vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD);
            // SAFETY: the memory was allocated exportable as OPAQUE_FD and lives as long as self.
            let raw = unsafe { external_fd.get_memory_fd(&info) }.map_err(vkerr("export memory fd"))?;
            // SAFETY: vkGetMemoryFdKHR returned a new fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            slots.push(ExportedFrameBuffer { fd, allocation_size: slot.nv12_allocation, dedicated: true });
        }
        let timeline = match &self.timeline {
            Some(t) => {
                let info = vk::SemaphoreGetFdInfoKHR::default()
                    .semaphore(t.semaphore)
                    .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
                // SAFETY: the semaphore was created exportable as OPAQUE_FD and lives as long as self.
                let raw = unsafe { t.export.get_semaphore_fd(&info) }.map_err(vkerr("export semaphore fd"))?;
                // SAFETY: vkGetSemaphoreFdKHR returned a new fd that nothing else owns.
                Some(unsafe { OwnedFd::from_raw_fd(raw) })
            }
            None => None,
        };
        let luma = u64::from(self.width) * u64::from(self.height);
        Ok(ExportedRing {
            timeline,
            device_uuid: self.device_uuid,
            width: self.width,
            height: self.height,
            pitch: self.width,
            uv_offset: luma,
            frame_bytes: luma + luma / 2,
            slots,
        })
    }
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
    let extensions = instance.enumerate_device_extension_properties(physical).map_err(|e| e.to_string())?;
    let has = extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(ash::khr::external_memory_fd::NAME));
    if !has {
        return Err("the device has no VK_KHR_external_memory_fd".into());
    }
    let info = vk::PhysicalDeviceExternalBufferInfo::default()
        .usage(vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::TRANSFER_SRC)
        .handle_type(vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD);
    let mut props = vk::ExternalBufferProperties::default();
    instance.get_physical_device_external_buffer_properties(physical, &info, &mut props);
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
    let extensions = instance.enumerate_device_extension_properties(physical).map_err(|e| e.to_string())?;
    for wanted in [ash::khr::timeline_semaphore::NAME, ash::khr::external_semaphore_fd::NAME] {
        if !extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(wanted)) {
            return Err(format!("the device has no {}", wanted.to_string_lossy()));
        }
    }
    let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default();
    let mut features = vk::PhysicalDeviceFeatures2::default().push_next(&mut timeline);
    instance.get_physical_device_features2(physical, &mut features);
    if timeline.timeline_semaphore == vk::FALSE {
        return Err("timeline semaphores are not enabled on this device".into());
    }
    let mut kind = vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
    let info = vk::PhysicalDeviceExternalSemaphoreInfo::default()
        .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD)
        .push_next(&mut kind);
    let mut props = vk::ExternalSemaphoreProperties::default();
    instance.get_physical_device_external_semaphore_properties(physical, &info, &mut props);
    if !props.external_semaphore_features.contains(vk::ExternalSemaphoreFeatureFlags::EXPORTABLE) {
        return Err("timeline semaphores cannot be exported as opaque fds on this device".into());
    }
    Ok(())
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // SAFETY: we own every handle; waiting for idle first makes destruction safe. Null
        // handles (from a partially built renderer) are ignored by Vulkan's destroy calls.
        unsafe {
            let d = &self.device;
            let _ = d.device_wait_idle();
            for p in self.pipelines.drain(..) {
                d.destroy_pipeline(p, None);
            }
            for l in self.layouts.drain(..) {
                d.destroy_pipeline_layout(l, None);
            }
            for l in self.set_layouts.drain(..) {
                d.destroy_descriptor_set_layout(l, None);
            }
            for m in self.modules.drain(..) {
                d.destroy_shader_module(m, None);
            }
            d.destroy_descriptor_pool(self.descriptor_pool, None);
            let per_slot = self
                .slots
                .iter()
                .flat_map(|s| [&s.uniform, &s.joints, &s.posed, &s.dims, &s.overlay, &s.output, &s.nv12]);
            for b in [&self.vertex, &self.index, &self.deltas].into_iter().chain(per_slot) {
                d.destroy_buffer(b.buffer, None);
                d.free_memory(b.memory, None);
            }
            d.destroy_framebuffer(self.framebuffer, None);
            d.destroy_render_pass(self.render_pass, None);
            d.destroy_sampler(self.sampler, None);
            for i in [&self.color, &self.depth, &self.textures] {
                d.destroy_image_view(i.view, None);
                d.destroy_image(i.image, None);
                d.free_memory(i.memory, None);
            }
            if let Some((pool, _)) = self.timestamps {
                d.destroy_query_pool(pool, None);
            }
            for slot in &self.slots {
                d.destroy_fence(slot.fence, None);
            }
            if let Some(t) = &self.timeline {
                d.destroy_semaphore(t.semaphore, None);
            }
            d.destroy_command_pool(self.pool, None);
            d.destroy_device(None);
        }
    }
}
