//! The avatar renderer: a pose in, an I420 frame out, on any Vulkan device (lavapipe on CI).
//!
//! # Layout
//! - [`model`]: what is drawn — vertices skinned to a node hierarchy, morph targets, VRM
//!   humanoid bones and expressions — loaded from glTF 2.0 / VRM 1.0 binaries.
//! - `gltf_guard`: what the gltf crate assumes of a file, checked before it reads one.
//! - [`avatar`]: the built-in head-and-shoulders avatar, as a [`model::Model`].
//! - [`animation`]: glTF node animations (the model's idle loop plays under the live layers).
//! - [`rig`]: how a [`Pose`] drives a model: face channels → morph targets, head and chest
//!   joints → skinning palette, and the face's framing.
//! - [`camera`]: camera presets around the face; [`math`]: matrices and quaternions.
//! - `gpu`: headless Vulkan (ash): morph + skin + light → compute RGB→YCbCr (BT.709 limited)
//!   through a ring of frame slots, into I420 read back to the host or NV12 in exportable
//!   device buffers ([`FrameOutput`]).
//! - [`Renderer`]: the public face: `render(&Pose) -> &[u8]` (I420, tightly packed), or
//!   `render_next` / `flush` to keep one frame in flight while the caller prepares the next;
//!   [`Renderer::export_ring`] hands the NV12 buffers to a zero-copy encoder (CUDA → NVENC).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod animation;
pub mod avatar;
pub mod camera;
mod gltf_guard;
mod gpu;
pub mod math;
pub mod model;
pub mod rig;

pub use gpu::GpuTimings;

/// Everything that moves, evaluated by the stage at the frame's media time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pose {
    /// 0 closed … 1 wide open.
    pub jaw_open: f32,
    /// Lip spread; negative rounds the lips.
    pub mouth_spread: f32,
    /// 0 open eyes … 1 closed.
    pub blink: f32,
    /// Expression: 1 smiling, 0 neutral, −1 mouth corners down.
    pub smile: f32,
    /// Breathing phase, −1 … 1.
    pub breath: f32,
    pub head_yaw: f32,
    pub head_pitch: f32,
    pub head_roll: f32,
    /// Where the eyes look, relative to the head: yaw (+ to the avatar's left) and pitch
    /// (+ down), radians.
    pub gaze_yaw: f32,
    pub gaze_pitch: f32,
    /// The right arm: 0 at rest … 1 raised beside the head (a wave).
    pub arm_raise: f32,
    /// The raised hand's swing, −1 … 1.
    pub arm_swing: f32,
    /// 0 normal picture … 1 black (the end-of-show fade).
    pub fade_out: f32,
    /// The frame's media time (48 kHz samples): where the model's idle animation is.
    pub media_ts: u64,
}

/// What the convert pass writes for each frame, and what comes back to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameOutput {
    /// I420 read back to host memory: the CPU encoder's input.
    #[default]
    HostI420,
    /// NV12 in exportable device buffers, nothing read back: the zero-copy encoder's input.
    ExportedNv12,
    /// NV12 exported and also copied back to the host, so that an importer's view of the same
    /// frame can be compared byte by byte.
    ExportedNv12WithReadback,
}

/// One ring slot's NV12 buffer, exported.
#[derive(Debug)]
pub struct ExportedFrameBuffer {
    /// An opaque fd of the buffer's memory (`VK_KHR_external_memory_fd`); an importer takes it.
    pub fd: std::os::fd::OwnedFd,
    /// The allocation's size, which the importer must be given (it may exceed the frame).
    pub allocation_size: u64,
    /// The memory is a dedicated allocation: the importer must say so too.
    pub dedicated: bool,
}

/// The renderer's NV12 frame buffers, exported once; frame n is in slot [`Renderer::last_slot`].
/// The renderer must outlive every import of them.
#[derive(Debug)]
pub struct ExportedRing {
    /// The Vulkan `deviceUUID`; an importer opens the device with the same UUID.
    pub device_uuid: [u8; 16],
    pub width: u32,
    pub height: u32,
    /// Bytes per row of both planes.
    pub pitch: u32,
    /// Where the interleaved UV plane starts.
    pub uv_offset: u64,
    /// Bytes of one frame (Y and UV).
    pub frame_bytes: u64,
    pub slots: Vec<ExportedFrameBuffer>,
    /// An opaque fd of the timeline semaphore that frame n signals with value n once written
    /// ([`Renderer::last_timeline_value`]), where the device can export one.
    pub timeline: Option<std::os::fd::OwnedFd>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error("no usable Vulkan: {0} (install mesa-vulkan-drivers for the CPU renderer)")]
    NoVulkan(String),
    #[error("Vulkan call failed: {what}: {code}")]
    Vulkan { what: &'static str, code: ash::vk::Result },
    #[error("no Vulkan memory type with {0}")]
    NoMemoryType(String),
    #[error("frame size {width}x{height}: width must be a multiple of 8 and height even, at least 16x16")]
    BadSize { width: u32, height: u32 },
    #[error("every frame slot is in flight; read a frame back first")]
    Busy,
    #[error("the device stopped answering earlier; the renderer must be rebuilt")]
    Broken,
    #[error("frames cannot be exported from this Vulkan device: {0}")]
    NoExport(String),
}

/// Bytes of one tightly packed I420 frame.
pub fn i420_len(width: u32, height: u32) -> usize {
    let luma = width as usize * height as usize;
    luma + luma / 2
}

pub struct Renderer {
    gpu: gpu::Gpu,
    model: model::Model,
    rig: rig::Rig,
    /// Per target: where its deltas start in the GPU buffer (in vec3s).
    delta_offsets: Vec<u32>,
    camera: emcee_protocol::CameraPreset,
    width: u32,
    height: u32,
    frame: Vec<u8>,
    /// The ring slot of the frame last returned.
    last_slot: Option<usize>,
    /// A fault drill asked for a panic in the next frame.
    panic_next: bool,
}

impl Renderer {
    /// A renderer drawing the built-in avatar.
    pub fn new(width: u32, height: u32, background_rgb: [u8; 3]) -> Result<Self, RenderError> {
        Self::builtin_with_output(width, height, background_rgb, FrameOutput::HostI420)
    }

    /// A renderer drawing the built-in avatar into `output`.
    pub fn builtin_with_output(
        width: u32,
        height: u32,
        background_rgb: [u8; 3],
        output: FrameOutput,
    ) -> Result<Self, RenderError> {
        let mut renderer = Self::with_output(width, height, background_rgb, avatar::default_avatar(), output)?;
        // The camera presets were made for it.
        renderer.rig.framing = rig::Framing::UNIT;
        Ok(renderer)
    }

    /// A renderer drawing `model` (e.g. from [`model::Model::from_glb`]).
    pub fn with_model(
        width: u32,
        height: u32,
        background_rgb: [u8; 3],
        model: model::Model,
    ) -> Result<Self, RenderError> {
        Self::with_output(width, height, background_rgb, model, FrameOutput::HostI420)
    }

    /// A renderer drawing `model` into `output`.
    pub fn with_output(
        width: u32,
        height: u32,
        background_rgb: [u8; 3],
        model: model::Model,
        output: FrameOutput,
    ) -> Result<Self, RenderError> {
        if !width.is_multiple_of(8) || !height.is_multiple_of(2) || width < 16 || height < 16 {
            return Err(RenderError::BadSize { width, height });
        }
        let gpu = gpu::Gpu::new(width, height, background_rgb, &model, output)?;
        let rig = rig::Rig::new(&model);
        if let Some(name) = rig.idle_animation(&model) {
            tracing::info!(animation = name, "the avatar's idle animation loops under the live layers");
        } else if !model.animations.is_empty() {
            tracing::info!(
                animations = model.animations.len(),
                "none of the avatar's animations is named idle; none plays"
            );
        }
        let delta_offsets = model
            .targets
            .iter()
            .scan(0u32, |at, t| {
                let here = *at;
                *at += t.deltas.len() as u32;
                Some(here)
            })
            .collect();
        Ok(Self {
            gpu,
            model,
            rig,
            delta_offsets,
            camera: emcee_protocol::CameraPreset::default(),
            width,
            height,
            frame: Vec::new(),
            last_slot: None,
            panic_next: false,
        })
    }

    /// Exports the NV12 ring (see [`FrameOutput`]); each call gives new fds.
    pub fn export_ring(&self) -> Result<ExportedRing, RenderError> {
        self.gpu.export_ring()
    }

    /// The ring slot holding the frame last returned; with an exported output its NV12 bytes
    /// stay there until the next frame is submitted.
    pub fn last_slot(&self) -> Option<usize> {
        self.last_slot
    }

    /// The timeline value that signals once the frame in [`Renderer::last_slot`] is written, when
    /// the ring exports a timeline semaphore (else None, and the frame was written when returned).
    /// [`Renderer::render_next`] then returns frames the GPU may still be drawing: whoever reads
    /// the slot waits for this value first.
    pub fn last_timeline_value(&self) -> Option<u64> {
        self.last_slot.and_then(|slot| self.gpu.timeline_value(slot))
    }

    /// The next [`Renderer::render_next`] panics (fault drills).
    pub fn simulate_panic(&mut self) {
        self.panic_next = true;
    }

    /// Behaves from now on as after a lost device: every render fails with
    /// [`RenderError::Broken`]. For fault drills: proving that a show survives its GPU.
    pub fn simulate_device_loss(&mut self) {
        self.gpu.mark_broken();
    }

    /// The ring slot the next frame will be drawn into (None while every slot is in flight).
    /// With an exported output, whoever still reads that slot must be done before then.
    pub fn next_slot(&self) -> Option<usize> {
        self.gpu.next_free_slot()
    }

    /// The Vulkan device's name (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub fn device_name(&self) -> &str {
        self.gpu.device_name()
    }

    /// True on a CPU implementation such as lavapipe.
    pub fn is_software(&self) -> bool {
        self.gpu.is_software()
    }

    /// GPU time of the last frame (render pass, convert pass), where the device can tell.
    pub fn last_timings(&self) -> Option<GpuTimings> {
        self.gpu.last_timings()
    }

    /// The scene's background and camera from the next frame on.
    pub fn set_scene(&mut self, scene: &emcee_protocol::Scene) {
        self.gpu.set_background(scene.background_rgb);
        self.camera = scene.camera;
    }

    /// Draws `rgba` (premultiplied RGBA8, `width × height`) over the picture from the next
    /// frame on (subtitles, product card, labels); `None` clears it.
    pub fn set_overlay(&mut self, rgba: Option<&[u8]>) {
        self.gpu.set_overlay(rgba);
    }

    /// Where the camera frames the face (for projecting model points to pixels).
    pub fn framing(&self) -> rig::Framing {
        self.rig.framing
    }

    /// Renders `pose` and waits for it; returns what was read back of it (valid until the next
    /// call): I420, or NV12 with [`FrameOutput::ExportedNv12WithReadback`], or nothing.
    /// Frames still in flight from [`Renderer::render_next`] are read and dropped.
    pub fn render(&mut self, pose: &Pose) -> Result<&[u8], RenderError> {
        self.submit(pose)?;
        while self.wait_oldest(false)? {}
        Ok(&self.frame)
    }

    /// Submits `pose` without waiting for it and returns the frame submitted before it (None
    /// when there was none): the GPU draws this frame while the caller prepares the next.
    /// [`Renderer::flush`] returns the last one. The returned frame is complete, except on an
    /// exported ring with a timeline semaphore: there the GPU may still be writing it, and its
    /// reader waits for [`Renderer::last_timeline_value`] instead of this thread.
    pub fn render_next(&mut self, pose: &Pose) -> Result<Option<&[u8]>, RenderError> {
        if std::mem::take(&mut self.panic_next) {
            panic!("fault drill: the renderer panics");
        }
        self.submit(pose)?;
        if self.gpu.frames_in_flight() > 1 {
            self.wait_oldest(true)?;
            return Ok(Some(&self.frame));
        }
        Ok(None)
    }

    /// Returns the frame in flight, if any: waited for, or handed over as by
    /// [`Renderer::render_next`].
    pub fn flush(&mut self) -> Result<Option<&[u8]>, RenderError> {
        Ok(self.wait_oldest(true)?.then_some(&self.frame[..]))
    }

    fn wait_oldest(&mut self, hand_over_early: bool) -> Result<bool, RenderError> {
        let slot = self.gpu.wait_oldest(&mut self.frame, hand_over_early)?;
        if slot.is_some() {
            self.last_slot = slot;
        }
        Ok(slot.is_some())
    }

    fn submit(&mut self, pose: &Pose) -> Result<(), RenderError> {
        let level = 1.0 - pose.fade_out.clamp(0.0, 1.0);
        let mut uniforms = [0u32; gpu::FRAME_UNIFORM_WORDS];
        let view_proj = camera::view_projection(self.camera, self.rig.framing, self.width, self.height);
        for (slot, value) in uniforms.iter_mut().zip(view_proj.iter()) {
            *slot = value.to_bits();
        }
        for (slot, value) in uniforms[16..20].iter_mut().zip([-0.4f32, 0.5, 0.9, level]) {
            *slot = value.to_bits();
        }
        let animated = self.rig.animated(&self.model, pose);
        let morphs = self.rig.morphs(pose, &animated);
        uniforms[20] = morphs.len() as u32;
        for (k, (target, weight)) in morphs.iter().enumerate() {
            let t = &self.model.targets[*target];
            let at = 24 + 4 * k;
            uniforms[at..at + 4].copy_from_slice(&[
                self.delta_offsets[*target],
                t.first_vertex,
                t.deltas.len() as u32,
                weight.to_bits(),
            ]);
        }
        let palette = self.rig.palette(&self.model, pose, &animated);
        self.gpu.submit(&uniforms, &palette, level)
    }
}
