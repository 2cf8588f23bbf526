//! NVENC H.264 on the CUDA device that holds the imported ring.
//!
//! `libnvidia-encode.so.1` is opened at run time, so the same binary starts where there is no
//! NVIDIA driver, or a driver without the encode library, or a GPU without an encode engine
//! (H100, H200, A100): each of those is an [`Unavailable`] reason, never a panic.
//!
//! The struct layouts come from the `nvidia-video-codec-sdk` crate's generated `sys` bindings
//! (SDK 12.1 headers); its safe layer is not used (it links the driver at build time, asserts
//! the driver version and panics in `Drop`).
//!
//! Once per ring slot the frame buffer is registered as a CUDA device pointer; per frame it is
//! mapped, encoded, its bitstream locked and copied, and unmapped. Linux NVENC is synchronous:
//! the lock blocks until the frame is encoded, so the caller runs this on its own thread.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::ptr::{addr_of_mut, null_mut};

use cudarc::driver::CudaContext;
use nvidia_video_codec_sdk::sys::nvEncodeAPI as nv;

use crate::cuda::CudaRing;
use crate::{EncodeError, EncodedFrame, EncoderSettings, Picture, Unavailable, VideoEncoder};

const LIBRARY: &str = "libnvidia-encode.so.1";
/// A call the function list does not have (an older driver): not an NVENC status code.
const MISSING_ENTRY_POINT: u32 = u32::MAX;

/// An NVENC status code, named as in `nvEncodeAPI.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvencStatus(pub u32);

impl std::fmt::Display for NvencStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 27] = [
            "SUCCESS",
            "NO_ENCODE_DEVICE",
            "UNSUPPORTED_DEVICE",
            "INVALID_ENCODERDEVICE",
            "INVALID_DEVICE",
            "DEVICE_NOT_EXIST",
            "INVALID_PTR",
            "INVALID_EVENT",
            "INVALID_PARAM",
            "INVALID_CALL",
            "OUT_OF_MEMORY",
            "ENCODER_NOT_INITIALIZED",
            "UNSUPPORTED_PARAM",
            "LOCK_BUSY",
            "NOT_ENOUGH_BUFFER",
            "INVALID_VERSION",
            "MAP_FAILED",
            "NEED_MORE_INPUT",
            "ENCODER_BUSY",
            "EVENT_NOT_REGISTERD",
            "GENERIC",
            "INCOMPATIBLE_CLIENT_KEY",
            "UNIMPLEMENTED",
            "RESOURCE_REGISTER_FAILED",
            "RESOURCE_NOT_REGISTERED",
            "RESOURCE_NOT_MAPPED",
            "NEED_MORE_OUTPUT",
        ];
        match NAMES.get(self.0 as usize) {
            _ if self.0 == MISSING_ENTRY_POINT => write!(f, "entry point missing from the driver"),
            Some(name) => write!(f, "NV_ENC_ERR_{name} ({})", self.0),
            None => write!(f, "NVENC status {}", self.0),
        }
    }
}

/// What a failed NVENC call said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvencCallError {
    pub call: &'static str,
    pub status: NvencStatus,
}

impl From<NvencCallError> for Unavailable {
    fn from(e: NvencCallError) -> Self {
        Unavailable::Nvenc { call: e.call, status: e.status.to_string() }
    }
}

impl From<NvencCallError> for EncodeError {
    fn from(e: NvencCallError) -> Self {
        EncodeError::Nvenc { call: e.call, status: e.status.to_string() }
    }
}

fn check(call: &'static str, status: u32) -> Result<(), NvencCallError> {
    if status == nv::NVENCSTATUS::NV_ENC_SUCCESS as u32 {
        Ok(())
    } else {
        Err(NvencCallError { call, status: NvencStatus(status) })
    }
}

/// Calls an entry of the function list; a missing entry is an error, not a crash.
macro_rules! nvenc {
    ($api:expr, $entry:ident ( $($arg:expr),* $(,)? )) => {
        match $api.functions.$entry {
            Some(f) => check(stringify!($entry), f($($arg),*) as u32),
            None => Err(NvencCallError { call: stringify!($entry), status: NvencStatus(MISSING_ENTRY_POINT) }),
        }
    };
}

/// The loaded library and its function list.
struct Api {
    functions: nv::NV_ENCODE_API_FUNCTION_LIST,
    _library: libloading::Library,
}

impl Api {
    fn load() -> Result<Self, Unavailable> {
        // SAFETY: opening the driver's own encode library; its initialisers are the driver's.
        let library =
            unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| Unavailable::NoEncodeLibrary(e.to_string()))?;
        // Our own signatures, returning a plain integer: the driver may return a status newer
        // than the bindings know, which must not become an invalid enum value.
        type MaxVersion = unsafe extern "C" fn(*mut u32) -> u32;
        type CreateInstance = unsafe extern "C" fn(*mut nv::NV_ENCODE_API_FUNCTION_LIST) -> u32;
        let symbol_missing = |e: libloading::Error| Unavailable::NoEncodeLibrary(e.to_string());
        // SAFETY: both symbols have these C signatures in every nvEncodeAPI.h since SDK 6.
        let (max_version, create) = unsafe {
            let max: libloading::Symbol<MaxVersion> =
                library.get(b"NvEncodeAPIGetMaxSupportedVersion\0").map_err(symbol_missing)?;
            let create: libloading::Symbol<CreateInstance> =
                library.get(b"NvEncodeAPICreateInstance\0").map_err(symbol_missing)?;
            (*max, *create)
        };
        let mut version = 0u32;
        // SAFETY: `version` is a valid out-pointer.
        check("NvEncodeAPIGetMaxSupportedVersion", unsafe { max_version(&mut version) })?;
        let driver = (version >> 4, version & 0xf);
        let needed = (nv::NVENCAPI_MAJOR_VERSION, nv::NVENCAPI_MINOR_VERSION);
        if driver < needed {
            return Err(Unavailable::ApiTooOld { driver, needed });
        }
        // SAFETY: the list is integers, raw pointers and optional function pointers, for all of
        // which zero is valid (no entry).
        let mut functions: nv::NV_ENCODE_API_FUNCTION_LIST = unsafe { std::mem::zeroed() };
        functions.version = nv::NV_ENCODE_API_FUNCTION_LIST_VER;
        // SAFETY: `functions` is a versioned list the call fills in.
        check("NvEncodeAPICreateInstance", unsafe { create(&mut functions) })?;
        Ok(Self { functions, _library: library })
    }
}

/// An open encode session; destroyed on drop.
struct Session {
    api: Api,
    encoder: *mut c_void,
}

impl Session {
    /// Opens a session on `context`, classifying why one cannot be had.
    fn open(context: &CudaContext) -> Result<Self, Unavailable> {
        let api = Api::load()?;
        // SAFETY: every field is an integer, a pointer or an enum whose zero is a variant.
        let mut params: nv::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS = unsafe { std::mem::zeroed() };
        params.version = nv::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER;
        params.deviceType = nv::NV_ENC_DEVICE_TYPE::NV_ENC_DEVICE_TYPE_CUDA;
        params.device = context.cu_ctx() as *mut c_void;
        params.apiVersion = nv::NVENCAPI_VERSION;
        let mut encoder = null_mut();
        // SAFETY: `params` names a live CUDA context that outlives the session (the ring holds
        // it); `encoder` is a valid out-pointer.
        let opened = unsafe { nvenc!(api, nvEncOpenEncodeSessionEx(&mut params, &mut encoder)) };
        let session = Self { api, encoder };
        match opened {
            Ok(()) => Ok(session),
            // The header asks for the session to be destroyed even when opening failed; Drop
            // does that when there is a handle.
            Err(e) => Err(classify_open_failure(e)),
        }
    }

    fn supports_h264(&self) -> Result<bool, NvencCallError> {
        let mut count = 0u32;
        // SAFETY: a live session; `count` is a valid out-pointer.
        unsafe { nvenc!(self.api, nvEncGetEncodeGUIDCount(self.encoder, &mut count))? };
        let mut guids = vec![nv::GUID::default(); count as usize];
        let mut filled = 0u32;
        // SAFETY: `guids` has room for `count` GUIDs.
        unsafe { nvenc!(self.api, nvEncGetEncodeGUIDs(self.encoder, guids.as_mut_ptr(), count, &mut filled))? };
        Ok(guids.iter().take(filled as usize).any(|g| *g == nv::NV_ENC_CODEC_H264_GUID))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.encoder.is_null() {
            return;
        }
        // SAFETY: the session handle is destroyed once; everything registered on it is gone.
        if let Err(e) = unsafe { nvenc!(self.api, nvEncDestroyEncoder(self.encoder)) } {
            tracing::warn!(call = e.call, status = %e.status, "closing the NVENC session failed");
        }
    }
}

fn classify_open_failure(e: NvencCallError) -> Unavailable {
    use nv::NVENCSTATUS::*;
    let code = e.status.0;
    let is = |s: nv::NVENCSTATUS| code == s as u32;
    if is(NV_ENC_ERR_NO_ENCODE_DEVICE) || is(NV_ENC_ERR_UNSUPPORTED_DEVICE) || is(NV_ENC_ERR_DEVICE_NOT_EXIST) {
        Unavailable::NoEncodeEngine(e.status.to_string())
    } else if is(NV_ENC_ERR_OUT_OF_MEMORY) || is(NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY) {
        // Consumer cards refuse sessions past their per-system limit with "out of memory".
        Unavailable::SessionLimit(e.status.to_string())
    } else {
        e.into()
    }
}

/// Checks that an H.264 NVENC session opens on `context`'s GPU, and closes it again.
pub fn probe(context: &CudaContext) -> Result<(), Unavailable> {
    let session = Session::open(context)?;
    match session.supports_h264()? {
        true => Ok(()),
        false => Err(Unavailable::NoH264),
    }
}

/// Sets the broadcast settings on a preset's configuration: CBR, a fixed GOP with an IDR and
/// parameter sets at its start, no B-frames, BT.709 limited range signalled in the VUI.
pub fn apply_settings(config: &mut nv::NV_ENC_CONFIG, settings: &EncoderSettings) {
    config.profileGUID = nv::NV_ENC_H264_PROFILE_HIGH_GUID;
    config.gopLength = settings.keyframe_interval;
    config.frameIntervalP = 1;
    let rc = &mut config.rcParams;
    rc.rateControlMode = nv::NV_ENC_PARAMS_RC_MODE::NV_ENC_PARAMS_RC_CBR;
    rc.averageBitRate = settings.bitrate_bps;
    rc.maxBitRate = settings.bitrate_bps;
    // One second of buffer: what ingest servers expect of a CBR stream.
    rc.vbvBufferSize = settings.bitrate_bps;
    rc.vbvInitialDelay = settings.bitrate_bps;
    rc.lookaheadDepth = 0;
    // SAFETY: the H.264 member of the union is the one an H.264 preset fills in.
    let h264 = unsafe { &mut config.encodeCodecConfig.h264Config };
    h264.idrPeriod = settings.keyframe_interval;
    h264.set_repeatSPSPPS(1);
    let vui = &mut h264.h264VUIParameters;
    vui.videoSignalTypePresentFlag = 1;
    vui.videoFormat = nv::NV_ENC_VUI_VIDEO_FORMAT::NV_ENC_VUI_VIDEO_FORMAT_UNSPECIFIED;
    vui.videoFullRangeFlag = 0;
    vui.colourDescriptionPresentFlag = 1;
    vui.colourPrimaries = nv::NV_ENC_VUI_COLOR_PRIMARIES::NV_ENC_VUI_COLOR_PRIMARIES_BT709;
    vui.transferCharacteristics = nv::NV_ENC_VUI_TRANSFER_CHARACTERISTIC::NV_ENC_VUI_TRANSFER_CHARACTERISTIC_BT709;
    vui.colourMatrix = nv::NV_ENC_VUI_MATRIX_COEFFS::NV_ENC_VUI_MATRIX_COEFFS_BT709;
}

/// A zeroed `T` but for what `fix` writes into it before it is read: for the structs that hold
/// an enum without a zero variant (zeroing those whole would be an invalid value).
///
/// # Safety
/// Zero must be a valid value of every field `fix` leaves alone.
unsafe fn zeroed_but<T>(fix: impl FnOnce(*mut T)) -> T {
    let mut value = MaybeUninit::<T>::zeroed();
    fix(value.as_mut_ptr());
    // SAFETY: the caller vouches for the zeroed fields; `fix` wrote the others.
    unsafe { value.assume_init() }
}

const FRAME: nv::NV_ENC_PIC_STRUCT = nv::NV_ENC_PIC_STRUCT::NV_ENC_PIC_STRUCT_FRAME;

/// An all-zero preset configuration, but for the one enum without a zero variant.
pub fn blank_preset() -> nv::NV_ENC_PRESET_CONFIG {
    let progressive = nv::NV_ENC_PARAMS_FRAME_FIELD_MODE::NV_ENC_PARAMS_FRAME_FIELD_MODE_FRAME;
    // SAFETY: zero is valid for every field but `frameFieldMode`, which is written in place.
    unsafe {
        zeroed_but(|p: *mut nv::NV_ENC_PRESET_CONFIG| addr_of_mut!((*p).presetCfg.frameFieldMode).write(progressive))
    }
}

fn blank_pic_params() -> nv::NV_ENC_PIC_PARAMS {
    // SAFETY: zero is valid for every field but `pictureStruct`, which is written in place.
    unsafe { zeroed_but(|p: *mut nv::NV_ENC_PIC_PARAMS| addr_of_mut!((*p).pictureStruct).write(FRAME)) }
}

fn blank_lock() -> nv::NV_ENC_LOCK_BITSTREAM {
    // SAFETY: zero is valid for every field but `pictureStruct`, which is written in place.
    unsafe { zeroed_but(|p: *mut nv::NV_ENC_LOCK_BITSTREAM| addr_of_mut!((*p).pictureStruct).write(FRAME)) }
}

/// The slots registered with a session, and its one bitstream buffer.
struct Buffers {
    registered: Vec<*mut c_void>,
    bitstream: *mut c_void,
}

impl Buffers {
    /// Registers every slot and creates the one bitstream buffer.
    fn register(&mut self, session: &Session, ring: &CudaRing) -> Result<(), Unavailable> {
        let layout = ring.layout();
        for slot in 0..ring.len() {
            let Some(ptr) = ring.device_ptr(slot) else { break };
            // SAFETY: every field is an integer, a pointer or an enum whose zero is a variant.
            let mut resource: nv::NV_ENC_REGISTER_RESOURCE = unsafe { std::mem::zeroed() };
            resource.version = nv::NV_ENC_REGISTER_RESOURCE_VER;
            resource.resourceType = nv::NV_ENC_INPUT_RESOURCE_TYPE::NV_ENC_INPUT_RESOURCE_TYPE_CUDADEVICEPTR;
            resource.width = layout.width;
            resource.height = layout.height;
            resource.pitch = layout.pitch;
            resource.resourceToRegister = ptr as *mut c_void;
            resource.bufferFormat = nv::NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12;
            resource.bufferUsage = nv::NV_ENC_BUFFER_USAGE::NV_ENC_INPUT_IMAGE;
            // SAFETY: `ptr` maps a whole NV12 frame of this layout for the ring's life, which
            // outlasts the registration.
            unsafe { nvenc!(session.api, nvEncRegisterResource(session.encoder, &mut resource))? };
            self.registered.push(resource.registeredResource);
        }
        // SAFETY: every field is an integer, a pointer or an enum whose zero is a variant.
        let mut buffer: nv::NV_ENC_CREATE_BITSTREAM_BUFFER = unsafe { std::mem::zeroed() };
        buffer.version = nv::NV_ENC_CREATE_BITSTREAM_BUFFER_VER;
        // SAFETY: a live, initialised session.
        unsafe { nvenc!(session.api, nvEncCreateBitstreamBuffer(session.encoder, &mut buffer))? };
        self.bitstream = buffer.bitstreamBuffer;
        Ok(())
    }

    /// Unregisters the slots and frees the bitstream buffer (before the session closes).
    fn release(&mut self, session: &Session) {
        let (api, encoder) = (&session.api, session.encoder);
        for resource in self.registered.drain(..) {
            // SAFETY: each registration is released once, none is mapped.
            if let Err(e) = unsafe { nvenc!(api, nvEncUnregisterResource(encoder, resource)) } {
                tracing::warn!(call = e.call, status = %e.status, "NVENC teardown");
            }
        }
        if !self.bitstream.is_null() {
            // SAFETY: the buffer is destroyed once and is not locked.
            if let Err(e) = unsafe { nvenc!(api, nvEncDestroyBitstreamBuffer(encoder, self.bitstream)) } {
                tracing::warn!(call = e.call, status = %e.status, "NVENC teardown");
            }
            self.bitstream = null_mut();
        }
    }
}

/// H.264 from the ring's NV12 slots on the GPU that rendered them: no host copy.
pub struct NvencEncoder {
    session: Session,
    buffers: Buffers,
    settings: EncoderSettings,
    /// Dropped after the session (fields drop in order): NVENC → CUDA → Vulkan.
    ring: CudaRing,
}

// SAFETY: the session and its resources are used from one thread at a time (`&mut self`), with
// the ring's CUDA context bound first.
unsafe impl Send for NvencEncoder {}

impl NvencEncoder {
    /// Opens a session on the ring's GPU, initialises it for `settings`, and registers every
    /// slot once. Gives the ring back with the reason when NVENC cannot be had.
    pub fn open(ring: CudaRing, settings: EncoderSettings) -> Result<Self, (Unavailable, Box<CudaRing>)> {
        let session = match Self::open_session(&ring, &settings) {
            Ok(session) => session,
            Err(reason) => return Err((reason, Box::new(ring))),
        };
        let mut buffers = Buffers { registered: Vec::new(), bitstream: null_mut() };
        if let Err(reason) = buffers.register(&session, &ring) {
            buffers.release(&session);
            drop(session);
            return Err((reason, Box::new(ring)));
        }
        Ok(Self { session, buffers, settings, ring })
    }

    fn open_session(ring: &CudaRing, settings: &EncoderSettings) -> Result<Session, Unavailable> {
        settings.validate().map_err(|e| Unavailable::Settings(e.to_string()))?;
        let layout = ring.layout();
        if (layout.width, layout.height) != (settings.width, settings.height) {
            return Err(Unavailable::Settings(format!(
                "ring frames are {}x{}, the stream is {}x{}",
                layout.width, layout.height, settings.width, settings.height
            )));
        }
        if layout.uv_offset != u64::from(layout.pitch) * u64::from(layout.height) || !layout.pitch.is_multiple_of(4) {
            return Err(Unavailable::Settings("NVENC needs the UV plane right after Y and a pitch of 4n".into()));
        }
        ring.context()
            .bind_to_thread()
            .map_err(|e| Unavailable::Cuda { call: "cuCtxSetCurrent", error: e.to_string() })?;
        let session = Session::open(ring.context())?;
        if !session.supports_h264()? {
            return Err(Unavailable::NoH264);
        }
        let mut preset = blank_preset();
        preset.version = nv::NV_ENC_PRESET_CONFIG_VER;
        preset.presetCfg.version = nv::NV_ENC_CONFIG_VER;
        let tuning = nv::NV_ENC_TUNING_INFO::NV_ENC_TUNING_INFO_ULTRA_LOW_LATENCY;
        // SAFETY: a live session; `preset` is a versioned struct the call fills in.
        unsafe {
            nvenc!(
                session.api,
                nvEncGetEncodePresetConfigEx(
                    session.encoder,
                    nv::NV_ENC_CODEC_H264_GUID,
                    nv::NV_ENC_PRESET_P3_GUID,
                    tuning,
                    &mut preset
                )
            )?
        };
        let mut config = preset.presetCfg;
        apply_settings(&mut config, settings);
        // SAFETY: every field is an integer, a pointer, a GUID or an enum whose zero is a variant.
        let mut init: nv::NV_ENC_INITIALIZE_PARAMS = unsafe { std::mem::zeroed() };
        init.version = nv::NV_ENC_INITIALIZE_PARAMS_VER;
        init.encodeGUID = nv::NV_ENC_CODEC_H264_GUID;
        init.presetGUID = nv::NV_ENC_PRESET_P3_GUID;
        init.tuningInfo = tuning;
        init.encodeWidth = settings.width;
        init.encodeHeight = settings.height;
        init.darWidth = settings.width;
        init.darHeight = settings.height;
        init.maxEncodeWidth = settings.width;
        init.maxEncodeHeight = settings.height;
        init.frameRateNum = settings.fps;
        init.frameRateDen = 1;
        init.enablePTD = 1;
        init.encodeConfig = &mut config;
        // SAFETY: `init` and the `config` it points to live across the call.
        unsafe { nvenc!(session.api, nvEncInitializeEncoder(session.encoder, &mut init))? };
        Ok(session)
    }

    /// Encodes the frame in `slot` once it is written (`written_at`, see [`Picture::Ring`]).
    fn encode_slot(
        &mut self,
        slot: usize,
        written_at: Option<u64>,
        frame_index: u64,
    ) -> Result<EncodedFrame, EncodeError> {
        let registered = *self.buffers.registered.get(slot).ok_or(EncodeError::NoSuchSlot(slot))?;
        if let Some(value) = written_at {
            // NVENC reads through its own stream: the frame must be complete before it is mapped.
            self.ring.wait_written(value).map_err(EncodeError::Cuda)?;
        }
        self.ring.context().bind_to_thread().map_err(|e| EncodeError::Cuda(e.to_string()))?;
        let (api, encoder) = (&self.session.api, self.session.encoder);
        // SAFETY: every field is an integer, a pointer or an enum whose zero is a variant.
        let mut map: nv::NV_ENC_MAP_INPUT_RESOURCE = unsafe { std::mem::zeroed() };
        map.version = nv::NV_ENC_MAP_INPUT_RESOURCE_VER;
        map.registeredResource = registered;
        // SAFETY: `registered` is a live registration of this session.
        unsafe { nvenc!(api, nvEncMapInputResource(encoder, &mut map))? };
        let encoded = self.encode_mapped(map.mappedResource, frame_index);
        // SAFETY: unmapped once, whether or not the encode worked.
        let unmapped = unsafe { nvenc!(api, nvEncUnmapInputResource(encoder, map.mappedResource)) };
        let frame = encoded?;
        unmapped?;
        Ok(frame)
    }

    fn encode_mapped(&self, input: *mut c_void, frame_index: u64) -> Result<EncodedFrame, EncodeError> {
        let (api, encoder) = (&self.session.api, self.session.encoder);
        let layout = self.ring.layout();
        let keyframe_wanted = frame_index.is_multiple_of(u64::from(self.settings.keyframe_interval));
        let mut pic = blank_pic_params();
        pic.version = nv::NV_ENC_PIC_PARAMS_VER;
        pic.inputWidth = layout.width;
        pic.inputHeight = layout.height;
        pic.inputPitch = layout.pitch;
        pic.inputBuffer = input;
        pic.outputBitstream = self.buffers.bitstream;
        pic.bufferFmt = nv::NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12;
        pic.inputTimeStamp = frame_index;
        pic.frameIdx = frame_index as u32;
        if keyframe_wanted {
            // The GOP is exactly `keyframe_interval` frames whatever the encoder counts.
            pic.encodePicFlags = nv::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_FORCEIDR as u32
                | nv::NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_OUTPUT_SPSPPS as u32;
        }
        // SAFETY: `input` is mapped and `outputBitstream` is this session's buffer.
        unsafe { nvenc!(api, nvEncEncodePicture(encoder, &mut pic))? };
        let mut lock = blank_lock();
        lock.version = nv::NV_ENC_LOCK_BITSTREAM_VER;
        lock.outputBitstream = self.buffers.bitstream;
        // SAFETY: blocks until the picture just submitted is encoded (Linux NVENC is synchronous).
        unsafe { nvenc!(api, nvEncLockBitstream(encoder, &mut lock))? };
        let annex_b = if lock.bitstreamBufferPtr.is_null() {
            Vec::new()
        } else {
            // SAFETY: while locked, the driver's buffer holds `bitstreamSizeInBytes` bytes.
            unsafe {
                std::slice::from_raw_parts(lock.bitstreamBufferPtr as *const u8, lock.bitstreamSizeInBytes as usize)
            }
            .to_vec()
        };
        let keyframe = matches!(
            lock.pictureType,
            nv::NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_IDR | nv::NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_I
        );
        // SAFETY: unlocks the buffer locked above; the bytes were copied.
        unsafe { nvenc!(api, nvEncUnlockBitstream(encoder, self.buffers.bitstream))? };
        if annex_b.is_empty() {
            return Err(EncodeError::Nvenc { call: "nvEncLockBitstream", status: "empty access unit".into() });
        }
        Ok(EncodedFrame { frame_index, keyframe, annex_b })
    }
}

impl Drop for NvencEncoder {
    fn drop(&mut self) {
        // Best effort: the session may already be broken, and a show that is ending must not
        // crash on a driver error.
        if self.ring.context().bind_to_thread().is_ok() {
            self.buffers.release(&self.session);
        }
    }
}

impl VideoEncoder for NvencEncoder {
    fn name(&self) -> &'static str {
        "nvenc"
    }

    fn encode(&mut self, picture: Picture<'_>, frame_index: u64) -> Result<EncodedFrame, EncodeError> {
        match picture {
            Picture::Ring { slot, written_at } => self.encode_slot(slot, written_at, frame_index),
            Picture::Host(_) => Err(EncodeError::WrongInput { encoder: "nvenc", wants: "a ring slot" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_settings_on_a_preset() {
        let settings =
            EncoderSettings { width: 1920, height: 1080, fps: 30, bitrate_bps: 4_500_000, keyframe_interval: 60 };
        let mut config = blank_preset().presetCfg;
        config.frameIntervalP = 3;
        apply_settings(&mut config, &settings);
        assert_eq!(config.frameIntervalP, 1, "no B-frames");
        assert_eq!(config.gopLength, 60);
        assert_eq!(config.rcParams.rateControlMode, nv::NV_ENC_PARAMS_RC_MODE::NV_ENC_PARAMS_RC_CBR);
        assert_eq!((config.rcParams.averageBitRate, config.rcParams.maxBitRate), (4_500_000, 4_500_000));
        // SAFETY: the H.264 member was written by `apply_settings`.
        let h264 = unsafe { config.encodeCodecConfig.h264Config };
        assert_eq!(h264.idrPeriod, 60);
        assert_eq!(h264.repeatSPSPPS(), 1);
        assert_eq!(h264.h264VUIParameters.videoFullRangeFlag, 0);
        assert_eq!(h264.h264VUIParameters.colourMatrix, nv::NV_ENC_VUI_MATRIX_COEFFS::NV_ENC_VUI_MATRIX_COEFFS_BT709);
    }

    #[test]
    fn status_codes_are_named() {
        assert_eq!(NvencStatus(10).to_string(), "NV_ENC_ERR_OUT_OF_MEMORY (10)");
        assert_eq!(NvencStatus(99).to_string(), "NVENC status 99");
        let open = |code| {
            classify_open_failure(NvencCallError { call: "nvEncOpenEncodeSessionEx", status: NvencStatus(code) })
        };
        assert!(matches!(open(1), Unavailable::NoEncodeEngine(_)));
        assert!(matches!(open(2), Unavailable::NoEncodeEngine(_)));
        assert!(matches!(open(10), Unavailable::SessionLimit(_)));
        assert!(matches!(open(15), Unavailable::Nvenc { .. }));
    }

    #[test]
    fn without_the_encode_library_the_reason_says_so() {
        match Api::load() {
            Err(Unavailable::NoEncodeLibrary(why)) => assert!(why.contains("libnvidia-encode"), "{why}"),
            Err(other) => eprintln!("the encode library is here but unusable: {other}"),
            Ok(_) => eprintln!("skipped: this machine has libnvidia-encode"),
        }
    }
}
