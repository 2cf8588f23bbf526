//! The renderer's exported NV12 ring, imported into CUDA once.
//!
//! The CUDA driver is loaded at run time (cudarc's dynamic loading), so the binary starts and
//! the tests run where there is none. cudarc's own loader panics when the library is missing,
//! so every entry point checks for it first and turns its absence into
//! [`Unavailable::NoCudaDriver`].
//!
//! The import goes through the raw driver call rather than cudarc's safe wrapper because the
//! wrapper always passes `flags: 0`: the renderer's buffers are dedicated allocations, and CUDA
//! must be told so (a mismatch is not rejected, it reads corrupted stripes).
//!
//! Where the renderer exports a timeline semaphore too, it is imported beside the buffers, and a
//! reader of a slot first waits for the frame's value on the ring's own stream
//! ([`CudaRing::wait_written`]): the renderer may hand a frame over before the GPU is done.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{result, sys, CudaContext, CudaStream};

use crate::Unavailable;

/// Where NV12 lives in each slot: Y rows of `pitch` bytes, then interleaved UV rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nv12Layout {
    pub width: u32,
    pub height: u32,
    pub pitch: u32,
    pub uv_offset: u64,
    pub frame_bytes: u64,
}

impl Nv12Layout {
    /// Rearranges one NV12 frame into I420 (what openh264 reads).
    pub fn to_i420(&self, nv12: &[u8], i420: &mut Vec<u8>) {
        let (w, h, pitch) = (self.width as usize, self.height as usize, self.pitch as usize);
        let uv_offset = self.uv_offset as usize;
        i420.clear();
        for row in nv12[..pitch * h].chunks(pitch) {
            i420.extend_from_slice(&row[..w]);
        }
        let uv_rows = || nv12[uv_offset..uv_offset + pitch * h / 2].chunks(pitch);
        for plane in 0..2 {
            for row in uv_rows() {
                i420.extend(row[..w].iter().skip(plane).step_by(2));
            }
        }
    }
}

/// One exported buffer, as the renderer hands it over.
#[derive(Debug)]
pub struct ExportedBuffer {
    pub fd: OwnedFd,
    pub allocation_size: u64,
    pub dedicated: bool,
}

/// The exported ring: which Vulkan device wrote it, its layout, and one buffer per slot.
#[derive(Debug)]
pub struct Nv12Ring {
    pub device_uuid: [u8; 16],
    pub layout: Nv12Layout,
    pub slots: Vec<ExportedBuffer>,
    /// The timeline semaphore frame n signals with value n once written, where exported.
    pub timeline: Option<OwnedFd>,
}

/// How long a reader waits for a frame the renderer handed over: far beyond any frame time; only
/// a lost or hung GPU takes this long.
const WRITTEN_WAIT: Duration = Duration::from_secs(2);

/// Whether a CUDA driver library can be loaded at all (cheap; makes no CUDA call).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library; no CUDA call is made.
    unsafe { sys::is_culib_present() }
}

/// Opens the CUDA device whose UUID is the Vulkan device's (never assume ordinal 0: the
/// renderer may run on another GPU, or on lavapipe, which CUDA does not know).
pub fn context_for(device_uuid: &[u8; 16]) -> Result<Arc<CudaContext>, Unavailable> {
    if !driver_present() {
        return Err(Unavailable::NoCudaDriver);
    }
    let failed = |call: &'static str| move |e: result::DriverError| Unavailable::Cuda { call, error: e.to_string() };
    result::init().map_err(failed("cuInit"))?;
    let count = result::device::get_count().map_err(failed("cuDeviceGetCount"))?;
    for ordinal in 0..count {
        let device = result::device::get(ordinal).map_err(failed("cuDeviceGet"))?;
        let uuid = result::device::get_uuid(device).map_err(failed("cuDeviceGetUuid"))?;
        if uuid.bytes.map(|b| b as u8) == *device_uuid {
            return CudaContext::new(ordinal as usize).map_err(failed("cuDevicePrimaryCtxRetain"));
        }
    }
    Err(Unavailable::NoMatchingCudaDevice { vulkan_uuid: format_uuid(device_uuid), cuda_devices: count as u32 })
}

fn format_uuid(uuid: &[u8; 16]) -> String {
    uuid.iter().map(|b| format!("{b:02x}")).collect()
}

struct ImportedSlot {
    memory: sys::CUexternalMemory,
    ptr: sys::CUdeviceptr,
}

/// The ring as CUDA sees it: one device pointer per slot, mapped once for the ring's life.
pub struct CudaRing {
    context: Arc<CudaContext>,
    layout: Nv12Layout,
    slots: Vec<ImportedSlot>,
    /// The renderer's timeline semaphore, imported.
    timeline: Option<sys::CUexternalSemaphore>,
    /// Where readers wait for the timeline.
    stream: Arc<CudaStream>,
}

// SAFETY: the handles are plain driver handles, valid in any thread that binds `context`, which
// every method does before using them.
unsafe impl Send for CudaRing {}

impl CudaRing {
    /// Imports every slot into the CUDA device with the ring's UUID. The fds pass to CUDA on
    /// success; on failure the ones not yet imported are closed.
    pub fn import(ring: Nv12Ring) -> Result<Self, Unavailable> {
        let context = context_for(&ring.device_uuid)?;
        let stream =
            context.new_stream().map_err(|e| Unavailable::Cuda { call: "cuStreamCreate", error: e.to_string() })?;
        let mut imported =
            Self { context, layout: ring.layout, slots: Vec::with_capacity(ring.slots.len()), timeline: None, stream };
        for (index, buffer) in ring.slots.into_iter().enumerate() {
            let slot = imported.import_slot(buffer).map_err(|error| Unavailable::Import { slot: index, error })?;
            imported.slots.push(slot);
        }
        if let Some(fd) = ring.timeline {
            imported.timeline = Some(imported.import_timeline(fd).map_err(Unavailable::ImportTimeline)?);
        }
        Ok(imported)
    }

    fn import_timeline(&self, fd: OwnedFd) -> Result<sys::CUexternalSemaphore, String> {
        self.context.bind_to_thread().map_err(|e| e.to_string())?;
        // Built field by field: its handle-type enum has no zero variant, so it is never zeroed.
        let desc = sys::CUDA_EXTERNAL_SEMAPHORE_HANDLE_DESC {
            type_: sys::CUexternalSemaphoreHandleType::CU_EXTERNAL_SEMAPHORE_HANDLE_TYPE_TIMELINE_SEMAPHORE_FD,
            handle: sys::CUDA_EXTERNAL_SEMAPHORE_HANDLE_DESC_st__bindgen_ty_1 { fd: fd.as_raw_fd() },
            flags: 0,
            reserved: [0; 16],
        };
        let mut semaphore = std::ptr::null_mut();
        // SAFETY: `desc` names a live opaque fd of a timeline semaphore; `semaphore` is a valid
        // out-pointer.
        unsafe { sys::cuImportExternalSemaphore(&mut semaphore, &desc) }
            .result()
            .map_err(|e| format!("cuImportExternalSemaphore: {e}"))?;
        // CUDA owns the fd after a successful import.
        let _ = fd.into_raw_fd();
        Ok(semaphore)
    }

    /// Whether readers wait on the renderer's timeline semaphore (else on nothing: the renderer
    /// hands over finished frames).
    pub fn has_timeline(&self) -> bool {
        self.timeline.is_some()
    }

    /// Waits until the renderer's timeline reaches `value`, i.e. the frame handed over with it is
    /// written. The wait runs on the GPU (the ring's stream); this thread polls it, so that a
    /// hung GPU is an error after [`WRITTEN_WAIT`] rather than a frozen encoder.
    pub fn wait_written(&self, value: u64) -> Result<(), String> {
        let Some(semaphore) = self.timeline else {
            return Err("the ring has no timeline semaphore to wait on".into());
        };
        self.context.bind_to_thread().map_err(|e| e.to_string())?;
        // SAFETY: plain C struct; the fence member carries the value, zero elsewhere.
        let mut params: sys::CUDA_EXTERNAL_SEMAPHORE_WAIT_PARAMS = unsafe { std::mem::zeroed() };
        params.params.fence.value = value;
        let stream = self.stream.cu_stream();
        // SAFETY: one imported semaphore and its parameters, on this context's stream.
        unsafe { sys::cuWaitExternalSemaphoresAsync(&semaphore, &params, 1, stream) }
            .result()
            .map_err(|e| format!("cuWaitExternalSemaphoresAsync: {e}"))?;
        let deadline = Instant::now() + WRITTEN_WAIT;
        loop {
            // SAFETY: queries a live stream of the bound context.
            match unsafe { sys::cuStreamQuery(stream) } {
                sys::CUresult::CUDA_SUCCESS => return Ok(()),
                sys::CUresult::CUDA_ERROR_NOT_READY if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(100))
                }
                sys::CUresult::CUDA_ERROR_NOT_READY => {
                    return Err(format!("frame {value} was not written within {WRITTEN_WAIT:?}"))
                }
                other => {
                    return Err(format!(
                        "cuStreamQuery: {}",
                        other.result().err().map(|e| e.to_string()).unwrap_or_default()
                    ))
                }
            }
        }
    }

    fn import_slot(&self, buffer: ExportedBuffer) -> Result<ImportedSlot, String> {
        if buffer.allocation_size < self.layout.frame_bytes {
            return Err(format!(
                "allocation of {} bytes cannot hold a {}-byte frame",
                buffer.allocation_size, self.layout.frame_bytes
            ));
        }
        self.context.bind_to_thread().map_err(|e| e.to_string())?;
        let desc = sys::CUDA_EXTERNAL_MEMORY_HANDLE_DESC {
            type_: sys::CUexternalMemoryHandleType::CU_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD,
            handle: sys::CUDA_EXTERNAL_MEMORY_HANDLE_DESC_st__bindgen_ty_1 { fd: buffer.fd.as_raw_fd() },
            size: buffer.allocation_size,
            flags: if buffer.dedicated { sys::CUDA_EXTERNAL_MEMORY_DEDICATED } else { 0 },
            reserved: [0; 16],
        };
        let mut memory = std::ptr::null_mut();
        // SAFETY: `desc` describes a live fd of exactly `allocation_size` bytes with the
        // renderer's dedicated flag; `memory` is a valid out-pointer.
        unsafe { sys::cuImportExternalMemory(&mut memory, &desc) }
            .result()
            .map_err(|e| format!("cuImportExternalMemory: {e}"))?;
        // CUDA owns the fd after a successful import and closes it itself.
        let _ = buffer.fd.into_raw_fd();
        let map = sys::CUDA_EXTERNAL_MEMORY_BUFFER_DESC {
            offset: 0,
            size: self.layout.frame_bytes,
            flags: 0,
            reserved: [0; 16],
        };
        let mut ptr = 0;
        // SAFETY: `memory` was just imported and spans at least `frame_bytes`.
        let mapped = unsafe { sys::cuExternalMemoryGetMappedBuffer(&mut ptr, memory, &map) }.result();
        if let Err(e) = mapped {
            // SAFETY: nothing is mapped onto `memory`, and it is destroyed once.
            let _ = unsafe { result::external_memory::destroy_external_memory(memory) };
            return Err(format!("cuExternalMemoryGetMappedBuffer: {e}"));
        }
        Ok(ImportedSlot { memory, ptr })
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.context
    }

    pub fn layout(&self) -> Nv12Layout {
        self.layout
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The CUDA device pointer of `slot`'s NV12 frame.
    pub fn device_ptr(&self, slot: usize) -> Option<sys::CUdeviceptr> {
        self.slots.get(slot).map(|s| s.ptr)
    }

    /// Copies `slot`'s frame, exactly the bytes an encoder on this device would read, to `dst`.
    pub fn copy_to_host(&self, slot: usize, dst: &mut Vec<u8>) -> Result<(), String> {
        let ptr = self.device_ptr(slot).ok_or_else(|| format!("no ring slot {slot}"))?;
        self.context.bind_to_thread().map_err(|e| e.to_string())?;
        dst.resize(self.layout.frame_bytes as usize, 0);
        // SAFETY: `ptr` maps `frame_bytes` bytes of device memory, and `dst` is that long.
        unsafe { result::memcpy_dtoh_sync(dst.as_mut_slice(), ptr) }.map_err(|e| format!("cuMemcpyDtoH: {e}"))
    }
}

impl Drop for CudaRing {
    fn drop(&mut self) {
        if let Err(e) = self.context.bind_to_thread() {
            tracing::warn!(error = %e, "cannot bind the CUDA context to free the imported ring");
            return;
        }
        if let Some(semaphore) = self.timeline.take() {
            // SAFETY: imported once, destroyed once; nothing waits on it any more (every wait
            // was polled to completion).
            if let Err(e) = unsafe { sys::cuDestroyExternalSemaphore(semaphore) }.result() {
                tracing::warn!(error = %e, "cuDestroyExternalSemaphore failed");
            }
        }
        for slot in self.slots.drain(..) {
            // SAFETY: each mapping and import is freed exactly once, mapping first; the encoder
            // that used them holds this ring and is gone before it.
            unsafe {
                if let Err(e) = result::free_sync(slot.ptr) {
                    tracing::warn!(error = %e, "cuMemFree of an imported frame failed");
                }
                if let Err(e) = result::external_memory::destroy_external_memory(slot.memory) {
                    tracing::warn!(error = %e, "cuDestroyExternalMemory failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv12_to_i420_splits_the_interleaved_chroma_and_drops_the_row_padding() {
        // 4x2 frame, pitch 6: Y rows then one UV row (U0 V0 U1 V1) with 2 bytes of padding each.
        let layout = Nv12Layout { width: 4, height: 2, pitch: 6, uv_offset: 12, frame_bytes: 18 };
        let nv12 = [1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 0, 0, 10, 20, 11, 21, 0, 0];
        let mut i420 = Vec::new();
        layout.to_i420(&nv12, &mut i420);
        assert_eq!(i420, [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 20, 21]);
    }

    #[test]
    fn without_a_cuda_driver_the_import_says_so() {
        if driver_present() {
            eprintln!("skipped: this machine has a CUDA driver");
            return;
        }
        let uuid = [7u8; 16];
        assert!(matches!(context_for(&uuid), Err(Unavailable::NoCudaDriver)));
    }
}
