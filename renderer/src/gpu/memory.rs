//! Device memory: host-visible and exportable buffers, images, the texture array, and the NV12
//! ring exported as fds for an importer (CUDA).

use std::os::fd::{FromRawFd, OwnedFd};

use ash::vk;

use super::{
    vkerr, Buffer, Gpu, Image, COLOR_FORMAT, DEPTH_FORMAT, DIMS_WORDS, FRAME_UNIFORM_WORDS, SLOTS, TEXTURE_FORMAT,
    VERTEX_FLOATS,
};
use crate::model::{Model, Texture, Vertex, MAX_TEXTURE_SIDE};
use crate::FrameOutput;
use crate::{ExportedFrameBuffer, ExportedRing, RenderError};

/// Host buffers: written by the CPU and read by the GPU (or back), without flushes.
const HOST_MEMORY: vk::MemoryPropertyFlags = vk::MemoryPropertyFlags::from_raw(
    vk::MemoryPropertyFlags::HOST_VISIBLE.as_raw() | vk::MemoryPropertyFlags::HOST_COHERENT.as_raw(),
);

impl Gpu {
    /// The first memory type `bits` allows with `preferred` properties, else (with `any_type`)
    /// the first it allows at all.
    fn memory_type(&self, bits: u32, preferred: vk::MemoryPropertyFlags, any_type: bool) -> Result<u32, RenderError> {
        let allowed = |i: &u32| bits & (1 << i) != 0;
        let types = &self.memory_props.memory_types;
        let mut indices = 0..self.memory_props.memory_type_count;
        indices
            .clone()
            .find(|i| allowed(i) && types[*i as usize].property_flags.contains(preferred))
            .or_else(|| any_type.then(|| indices.find(allowed)).flatten())
            .ok_or(RenderError::NoMemoryType(format!("{preferred:?}")))
    }

    /// Memory for `req`, of a type with `preferred` properties, else (with `any_type`) of any
    /// type it allows. The caller binds it and keeps it in self, so that Drop frees it.
    fn allocate(
        &self,
        req: vk::MemoryRequirements,
        preferred: vk::MemoryPropertyFlags,
        any_type: bool,
        what: &'static str,
    ) -> Result<vk::DeviceMemory, RenderError> {
        let index = self.memory_type(req.memory_type_bits, preferred, any_type)?;
        let info = vk::MemoryAllocateInfo::default().allocation_size(req.size).memory_type_index(index);
        // SAFETY: a valid allocate info (a type the requirements allow) on our live device.
        unsafe { self.device.allocate_memory(&info, None) }.map_err(vkerr(what))
    }

    pub(super) fn buffer(&self, size: u64, usage: vk::BufferUsageFlags, host: bool) -> Result<Buffer, RenderError> {
        // SAFETY: calls on our live device with valid create infos; the new objects are handed to the caller, who keeps them in self so that Drop frees them; the mapping covers the whole allocation.

        unsafe {
            let buffer = self
                .device
                .create_buffer(&vk::BufferCreateInfo::default().size(size).usage(usage), None)
                .map_err(vkerr("create buffer"))?;
            let req = self.device.get_buffer_memory_requirements(buffer);
            // Device-local is preferred for vertex data, but any memory type works; host
            // buffers must be host-visible.
            let memory = match host {
                true => self.allocate(req, HOST_MEMORY, false, "allocate buffer memory")?,
                false => self.allocate(req, vk::MemoryPropertyFlags::DEVICE_LOCAL, true, "allocate buffer memory")?,
            };
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
    }

    /// A device buffer whose memory can be exported as an opaque fd: a dedicated allocation,
    /// device-local where the device has such memory. Returns it with its allocation size.
    pub(super) fn exportable_buffer(
        &self,
        size: u64,
        usage: vk::BufferUsageFlags,
    ) -> Result<(Buffer, u64), RenderError> {
        // SAFETY: calls on our live device with valid create infos (the export info matches the buffer's external handle type); on failure what was made is destroyed here, on success the caller keeps it in self.
        unsafe {
            let handle = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;
            let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(handle);
            let buffer = self
                .device
                .create_buffer(&vk::BufferCreateInfo::default().size(size).usage(usage).push_next(&mut external), None)
                .map_err(vkerr("create exportable buffer"))?;
            let req = self.device.get_buffer_memory_requirements(buffer);
            let index = match self.memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::DEVICE_LOCAL, true) {
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
    }

    /// The colour and depth images every frame draws into, the render pass and framebuffer.
    pub(super) fn build_targets(&mut self) -> Result<(), RenderError> {
        self.color = self.image(
            COLOR_FORMAT,
            vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::SAMPLED | vk::ImageUsageFlags::TRANSFER_SRC,
            vk::ImageAspectFlags::COLOR,
        )?;
        self.depth =
            self.image(DEPTH_FORMAT, vk::ImageUsageFlags::DEPTH_STENCIL_ATTACHMENT, vk::ImageAspectFlags::DEPTH)?;
        self.render_pass = self.render_pass()?;
        let views = [self.color.view, self.depth.view];
        let info = vk::FramebufferCreateInfo::default()
            .render_pass(self.render_pass)
            .attachments(&views)
            .width(self.width)
            .height(self.height)
            .layers(1);
        // SAFETY: the render pass and views were just made on our device; Drop frees them all.
        self.framebuffer =
            unsafe { self.device.create_framebuffer(&info, None) }.map_err(vkerr("create framebuffer"))?;
        Ok(())
    }

    /// Clear, draw, leave the colour image ready for the compute pass to read.
    fn render_pass(&self) -> Result<vk::RenderPass, RenderError> {
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
        let info = vk::RenderPassCreateInfo::default()
            .attachments(&attachments)
            .subpasses(&subpass)
            .dependencies(&dependencies);
        // SAFETY: a valid create info on our device; the caller keeps the pass in self.
        unsafe { self.device.create_render_pass(&info, None) }.map_err(vkerr("create render pass"))
    }

    /// The model's vertices (opaque triangles first), indices and morph target deltas.
    pub(super) fn upload_model(&mut self, model: &Model) -> Result<(), RenderError> {
        let floats = |v: &Vertex| {
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
        Ok(())
    }

    /// Each slot's own buffers: uniforms, palette, posed vertices, dims, overlay and outputs.
    pub(super) fn make_slot_buffers(&mut self, model: &Model) -> Result<(), RenderError> {
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

        Ok(())
    }

    /// A host-visible buffer filled with `bytes`.
    pub(super) fn upload(&self, bytes: &[u8], usage: vk::BufferUsageFlags) -> Result<Buffer, RenderError> {
        // SAFETY: `buf` was just mapped host-visible with `bytes.len()` bytes; nothing else uses it yet.
        unsafe {
            let buf = self.buffer(bytes.len() as u64, usage, true)?;
            if let Some(ptr) = buf.mapped {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len());
            }
            Ok(buf)
        }
    }

    pub(super) fn image(
        &self,
        format: vk::Format,
        usage: vk::ImageUsageFlags,
        aspect: vk::ImageAspectFlags,
    ) -> Result<Image, RenderError> {
        self.image_array(format, usage, aspect, (self.width, self.height), 1)
    }

    /// A 2D image of `layers` layers (viewed as an array when there are several).
    pub(super) fn image_array(
        &self,
        format: vk::Format,
        usage: vk::ImageUsageFlags,
        aspect: vk::ImageAspectFlags,
        (width, height): (u32, u32),
        layers: u32,
    ) -> Result<Image, RenderError> {
        // SAFETY: calls on our live device with valid create infos; the image, its memory and view are handed to the caller, who keeps them in self so that Drop frees them.
        unsafe {
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
            let memory = self.allocate(req, vk::MemoryPropertyFlags::DEVICE_LOCAL, true, "allocate image memory")?;
            self.device.bind_image_memory(image, memory, 0).map_err(vkerr("bind image memory"))?;
            let view = self
                .device
                .create_image_view(
                    &vk::ImageViewCreateInfo::default()
                        .image(image)
                        .view_type(if layers > 1 {
                            vk::ImageViewType::TYPE_2D_ARRAY
                        } else {
                            vk::ImageViewType::TYPE_2D
                        })
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
    }

    /// Uploads the model's textures into one array image (each layer `side`², scaled to fit;
    /// two layers at least, so the shader always sees an array), and makes the sampler.
    pub(super) fn upload_textures(&mut self, textures: &[Texture]) -> Result<(), RenderError> {
        let (side, layers, bytes) = texture_layers(textures);
        self.textures = self.image_array(
            TEXTURE_FORMAT,
            vk::ImageUsageFlags::SAMPLED | vk::ImageUsageFlags::TRANSFER_DST,
            vk::ImageAspectFlags::COLOR,
            (side, side),
            layers,
        )?;
        let staging = self.upload(&bytes, vk::BufferUsageFlags::TRANSFER_SRC)?;
        let copied = self.copy_to_texture_array(&staging, side, layers);
        // SAFETY: the copy was waited for (or failed to be submitted), so nothing uses the
        // staging buffer any more.
        unsafe {
            self.device.destroy_buffer(staging.buffer, None);
            self.device.free_memory(staging.memory, None);
        }
        copied?;
        let info = vk::SamplerCreateInfo::default()
            .mag_filter(vk::Filter::LINEAR)
            .min_filter(vk::Filter::LINEAR)
            .address_mode_u(vk::SamplerAddressMode::REPEAT)
            .address_mode_v(vk::SamplerAddressMode::REPEAT)
            .address_mode_w(vk::SamplerAddressMode::CLAMP_TO_EDGE);
        // SAFETY: a valid create info on our device; the sampler is destroyed in Drop.
        self.sampler = unsafe { self.device.create_sampler(&info, None) }.map_err(vkerr("create sampler"))?;
        Ok(())
    }

    /// Copies `staging` into every layer of the texture array and leaves it ready for the
    /// fragment shader, on slot 0's command buffer (no frame is in flight yet), waiting for it.
    fn copy_to_texture_array(&self, staging: &Buffer, side: u32, layers: u32) -> Result<(), RenderError> {
        let d = &self.device;
        let image = self.textures.image;
        let (cmd, fence) = (self.slots[0].cmd, self.slots[0].fence);
        let begin = vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        let region = [vk::BufferImageCopy::default()
            .image_subresource(vk::ImageSubresourceLayers {
                aspect_mask: vk::ImageAspectFlags::COLOR,
                mip_level: 0,
                base_array_layer: 0,
                layer_count: layers,
            })
            .image_extent(vk::Extent3D { width: side, height: side, depth: 1 })];
        let undefined = (vk::ImageLayout::UNDEFINED, vk::PipelineStageFlags::TOP_OF_PIPE, vk::AccessFlags::empty());
        let transfer_dst =
            (vk::ImageLayout::TRANSFER_DST_OPTIMAL, vk::PipelineStageFlags::TRANSFER, vk::AccessFlags::TRANSFER_WRITE);
        let shader_read = (
            vk::ImageLayout::SHADER_READ_ONLY_OPTIMAL,
            vk::PipelineStageFlags::FRAGMENT_SHADER,
            vk::AccessFlags::SHADER_READ,
        );
        // SAFETY: slot 0's command buffer and fence are idle (the renderer is being built and
        // nothing was submitted on them, or the last submission was waited for); the image and
        // staging buffer are ours and outlive the wait below.
        unsafe {
            d.begin_command_buffer(cmd, &begin).map_err(vkerr("begin commands"))?;
            self.image_barrier(cmd, image, layers, undefined, transfer_dst);
            let dst = vk::ImageLayout::TRANSFER_DST_OPTIMAL;
            d.cmd_copy_buffer_to_image(cmd, staging.buffer, image, dst, &region);
            self.image_barrier(cmd, image, layers, transfer_dst, shader_read);
            d.end_command_buffer(cmd).map_err(vkerr("end commands"))?;
            let cmds = [cmd];
            let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
            d.queue_submit(self.queue, &submit, fence).map_err(vkerr("submit texture upload"))?;
            let waited = d.wait_for_fences(&[fence], true, 10_000_000_000);
            d.reset_fences(&[fence]).map_err(vkerr("reset fence"))?;
            waited.map_err(vkerr("wait for texture upload"))
        }
    }

    /// Records a layout transition of every layer of a colour image, from `src` (layout, stage,
    /// access) to `dst`.
    ///
    /// # Safety
    /// The command buffer is recording; `image` is this renderer's and has `layers` layers.
    unsafe fn image_barrier(
        &self,
        cmd: vk::CommandBuffer,
        image: vk::Image,
        layers: u32,
        src: (vk::ImageLayout, vk::PipelineStageFlags, vk::AccessFlags),
        dst: (vk::ImageLayout, vk::PipelineStageFlags, vk::AccessFlags),
    ) {
        let range = vk::ImageSubresourceRange {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            base_mip_level: 0,
            level_count: 1,
            base_array_layer: 0,
            layer_count: layers,
        };
        let barrier = [vk::ImageMemoryBarrier::default()
            .old_layout(src.0)
            .new_layout(dst.0)
            .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .image(image)
            .subresource_range(range)
            .src_access_mask(src.2)
            .dst_access_mask(dst.2)];
        let flags = vk::DependencyFlags::empty();
        // SAFETY: the caller's promise.
        unsafe { self.device.cmd_pipeline_barrier(cmd, src.1, dst.1, flags, &[], &[], &barrier) };
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

/// The textures as one array of square layers: (side, layer count, RGBA bytes). Each texture is
/// scaled to the largest side (capped); unused layers and undecodable textures stay white.
fn texture_layers(textures: &[Texture]) -> (u32, u32, Vec<u8>) {
    let side = textures.iter().map(|t| t.width.max(t.height)).max().unwrap_or(1).clamp(1, MAX_TEXTURE_SIDE);
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
    (side, layers, bytes)
}
