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
//!
//! # Layout
//! - this file: the renderer's handles ([`Gpu`], its frame [`Slot`]s) and their destruction.
//! - `device`: the process's Vulkan instance, choosing and opening a device, what it can export.
//! - `memory`: buffers, images, texture upload, and exporting the NV12 ring as fds.
//! - `pipelines`: render targets, the model's buffers, descriptor layouts and sets, shaders and
//!   pipelines — everything made once per renderer.
//! - `frame`: one frame: write its inputs, record the pose, avatar and convert passes, submit,
//!   and take finished frames back (fences, timings).

mod device;
mod frame;
mod memory;
mod pipelines;

use std::collections::VecDeque;

use ash::vk;

use crate::{FrameOutput, RenderError};

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

impl Buffer {
    /// Not made yet: Vulkan's destroy calls ignore null handles, so Drop may free it anyway.
    const NULL: Buffer = Buffer { buffer: vk::Buffer::null(), memory: vk::DeviceMemory::null(), size: 0, mapped: None };
}

impl Image {
    /// Not made yet (see [`Buffer::NULL`]).
    const NULL: Image =
        Image { image: vk::Image::null(), memory: vk::DeviceMemory::null(), view: vk::ImageView::null() };
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
