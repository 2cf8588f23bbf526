//! The avatar renderer: a pose in, an I420 frame out, on any Vulkan device (lavapipe on CI).
//!
//! # Layout
//! - [`avatar`]: the built-in head-and-shoulders mesh with named morph targets (glTF-shaped data).
//! - [`camera`]: camera framing, head motion, the per-frame uniform block.
//! - `gpu`: headless Vulkan (ash): render pass → compute RGB→I420 (BT.709 limited) → readback.
//! - [`Renderer`]: the public face: `render(&Pose) -> &[u8]` (I420, tightly packed).
//!
//! The compute pass writes I420 for the CPU encoder; the NVENC path will add an NV12 output
//! from the same pass into exportable memory.

pub mod avatar;
pub mod camera;
mod gpu;

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
    /// 0 normal picture … 1 black (the end-of-show fade).
    pub fade_out: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no usable Vulkan: {0} (install mesa-vulkan-drivers for the CPU renderer)")]
    NoVulkan(String),
    #[error("Vulkan call failed: {what}: {code}")]
    Vulkan { what: &'static str, code: ash::vk::Result },
    #[error("no Vulkan memory type with {0}")]
    NoMemoryType(String),
    #[error("frame size {width}x{height}: width must be a multiple of 8 and height even, at least 16x16")]
    BadSize { width: u32, height: u32 },
}

/// Bytes of one tightly packed I420 frame.
pub fn i420_len(width: u32, height: u32) -> usize {
    let luma = width as usize * height as usize;
    luma + luma / 2
}

pub struct Renderer {
    gpu: gpu::Gpu,
    frame: Vec<u8>,
}

impl Renderer {
    pub fn new(width: u32, height: u32, background_rgb: [u8; 3]) -> Result<Self, RenderError> {
        if !width.is_multiple_of(8) || !height.is_multiple_of(2) || width < 16 || height < 16 {
            return Err(RenderError::BadSize { width, height });
        }
        let gpu = gpu::Gpu::new(width, height, background_rgb, &avatar::default_avatar())?;
        Ok(Self { gpu, frame: Vec::new() })
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
        self.gpu.set_scene(scene.background_rgb, scene.camera);
    }

    /// Renders `pose`; returns the I420 frame (valid until the next call).
    pub fn render(&mut self, pose: &Pose) -> Result<&[u8], RenderError> {
        self.gpu.render(pose, &mut self.frame)?;
        Ok(&self.frame)
    }
}
