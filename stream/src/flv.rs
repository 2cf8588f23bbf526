//! FLV tag bodies for H.264 and AAC (legacy, non-enhanced framing: what every ingest accepts).
//!
//! Formats: ISO/IEC 14496-15 §5.2.4.1 (AVCDecoderConfigurationRecord), ISO/IEC 14496-3 §1.6.2.1
//! (AudioSpecificConfig), Adobe FLV v10.1 §E.4.3 (video/audio tag headers).

use bytes::{BufMut, Bytes, BytesMut};

/// H.264 NAL unit types we treat specially.
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FlvError {
    #[error("keyframe without SPS and PPS: cannot build an AVC decoder configuration record")]
    MissingParameterSets,
    #[error("SPS is {0} bytes; an SPS has at least 4 (header, profile, constraints, level)")]
    ShortSps(usize),
    #[error("NAL unit of {0} bytes does not fit the FLV 4-byte length field")]
    NalTooLarge(usize),
}

/// Splits an Annex-B byte stream (start codes `00 00 01` or `00 00 00 01`) into NAL units,
/// without their start codes. Trailing zero bytes of a NAL (before the next start code) are
/// dropped, as the spec allows.
pub fn split_annex_b(stream: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 2 < stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            if let Some(s) = start {
                nals.push(trim_trailing_zeros(&stream[s..i]));
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        if s < stream.len() {
            nals.push(trim_trailing_zeros(&stream[s..]));
        }
    }
    nals.retain(|n| !n.is_empty());
    nals
}

fn trim_trailing_zeros(nal: &[u8]) -> &[u8] {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    &nal[..end]
}

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// One encoded access unit, ready for FLV: parameter sets split out, the rest length-prefixed.
#[derive(Debug, Clone, PartialEq)]
pub struct AvcAccessUnit {
    pub keyframe: bool,
    /// SPS and PPS found in this access unit (each with its NAL header byte).
    pub sps: Option<Vec<u8>>,
    pub pps: Option<Vec<u8>>,
    /// NAL units other than SPS/PPS/AUD, each prefixed with its 4-byte big-endian length.
    pub avcc: Bytes,
}

/// Converts an Annex-B access unit to AVCC, keeping SEI and slices, separating SPS/PPS.
pub fn annex_b_to_avcc(access_unit: &[u8], keyframe: bool) -> Result<AvcAccessUnit, FlvError> {
    let mut out = BytesMut::with_capacity(access_unit.len());
    let (mut sps, mut pps) = (None, None);
    for nal in split_annex_b(access_unit) {
        match nal_type(nal) {
            NAL_SPS => sps = Some(nal.to_vec()),
            NAL_PPS => pps = Some(nal.to_vec()),
            NAL_AUD => {}
            _ => {
                let len = u32::try_from(nal.len()).map_err(|_| FlvError::NalTooLarge(nal.len()))?;
                out.put_u32(len);
                out.put_slice(nal);
            }
        }
    }
    Ok(AvcAccessUnit { keyframe, sps, pps, avcc: out.freeze() })
}

/// Builds the AVCDecoderConfigurationRecord for one SPS and one PPS.
pub fn avc_decoder_configuration_record(sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, FlvError> {
    if sps.len() < 4 {
        return Err(FlvError::ShortSps(sps.len()));
    }
    let profile = sps[1];
    let mut rec = Vec::with_capacity(16 + sps.len() + pps.len());
    rec.push(1); // configurationVersion
    rec.extend_from_slice(&sps[1..4]); // profile, compatibility, level
    rec.push(0xFC | 3); // 4-byte NAL lengths
    rec.push(0xE0 | 1); // one SPS
    rec.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    rec.extend_from_slice(sps);
    rec.push(1); // one PPS
    rec.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    rec.extend_from_slice(pps);
    if matches!(profile, 100 | 110 | 122 | 144) {
        // High-profile tail; we only ever encode 4:2:0 8-bit.
        rec.extend_from_slice(&[0xFC | 1, 0xF8, 0xF8, 0]);
    }
    Ok(rec)
}

const FLV_CODEC_AVC: u8 = 7;
const AVC_SEQUENCE_HEADER: u8 = 0;
const AVC_NALU: u8 = 1;
const AVC_END_OF_SEQUENCE: u8 = 2;

fn video_tag_header(keyframe: bool, packet_type: u8) -> [u8; 5] {
    let frame_type = if keyframe { 1 } else { 2 };
    // Composition time offset is 0: the encoder never reorders frames (no B-frames).
    [(frame_type << 4) | FLV_CODEC_AVC, packet_type, 0, 0, 0]
}

/// FLV video body carrying the decoder configuration record.
pub fn video_sequence_header(record: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + record.len());
    body.put_slice(&video_tag_header(true, AVC_SEQUENCE_HEADER));
    body.put_slice(record);
    body.freeze()
}

/// FLV video body carrying one access unit.
pub fn video_frame(au: &AvcAccessUnit) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + au.avcc.len());
    body.put_slice(&video_tag_header(au.keyframe, AVC_NALU));
    body.put_slice(&au.avcc);
    body.freeze()
}

/// FLV video body marking the end of the sequence (sent when a show ends cleanly).
pub fn video_end_of_sequence() -> Bytes {
    Bytes::copy_from_slice(&video_tag_header(true, AVC_END_OF_SEQUENCE))
}

/// FLV sound header byte for AAC: format 10, "44 kHz" rate code, 16-bit, stereo. The FLV spec
/// requires exactly these bits for AAC; the real rate and channels come from the ASC.
const FLV_AAC_SOUND_HEADER: u8 = (10 << 4) | (3 << 2) | (1 << 1) | 1;

/// FLV audio body carrying the AudioSpecificConfig.
pub fn audio_sequence_header(asc: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + asc.len());
    body.put_slice(&[FLV_AAC_SOUND_HEADER, 0]);
    body.put_slice(asc);
    body.freeze()
}

/// FLV audio body carrying one raw AAC frame.
pub fn audio_frame(raw_aac: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + raw_aac.len());
    body.put_slice(&[FLV_AAC_SOUND_HEADER, 1]);
    body.put_slice(raw_aac);
    body.freeze()
}

/// AudioSpecificConfig for AAC-LC.
pub fn aac_lc_audio_specific_config(sample_rate: u32, channels: u8) -> Option<[u8; 2]> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let index = RATES.iter().position(|&r| r == sample_rate)? as u16;
    if channels == 0 || channels > 7 {
        return None;
    }
    let aot_lc: u16 = 2;
    let bits = (aot_lc << 11) | (index << 7) | (u16::from(channels) << 3);
    Some(bits.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_mixed_start_codes_and_drops_empty_units() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 5];
        let nals = split_annex_b(&stream);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
        assert!(split_annex_b(&[1, 2, 3]).is_empty());
        assert!(split_annex_b(&[]).is_empty());
    }

    #[test]
    fn avcc_separates_parameter_sets_and_drops_aud() {
        let au = [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x64, 0, 0x1f, 0, 0, 1, 0x68, 0xee, 0, 0, 1, 0x65, 0xaa];
        let out = annex_b_to_avcc(&au, true).unwrap();
        assert_eq!(out.sps.as_deref(), Some(&[0x67, 0x64, 0, 0x1f][..]));
        assert_eq!(out.pps.as_deref(), Some(&[0x68, 0xee][..]));
        assert_eq!(&out.avcc[..], &[0, 0, 0, 2, 0x65, 0xaa]);
    }

    #[test]
    fn decoder_record_layout_for_high_profile() {
        let sps = [0x67, 100, 0, 31, 0xAC];
        let pps = [0x68, 0xEE, 0x3C];
        let rec = avc_decoder_configuration_record(&sps, &pps).unwrap();
        assert_eq!(
            rec,
            vec![
                1, 100, 0, 31, 0xFF, 0xE1, 0, 5, 0x67, 100, 0, 31, 0xAC, 1, 0, 3, 0x68, 0xEE, 0x3C, 0xFD, 0xF8, 0xF8, 0
            ]
        );
        // Baseline has no tail.
        let rec = avc_decoder_configuration_record(&[0x67, 66, 0xC0, 31], &pps).unwrap();
        assert_eq!(rec.len(), 6 + 2 + 4 + 1 + 2 + 3);
        assert_eq!(avc_decoder_configuration_record(&[0x67], &pps), Err(FlvError::ShortSps(1)));
    }

    #[test]
    fn audio_specific_config_for_lc_48k_stereo() {
        assert_eq!(aac_lc_audio_specific_config(48000, 2), Some([0x11, 0x90]));
        assert_eq!(aac_lc_audio_specific_config(44100, 2), Some([0x12, 0x10]));
        assert_eq!(aac_lc_audio_specific_config(12345, 2), None);
    }

    #[test]
    fn tag_headers() {
        assert_eq!(&audio_frame(&[9])[..], &[0xAF, 1, 9]);
        assert_eq!(&audio_sequence_header(&[0x11, 0x90])[..], &[0xAF, 0, 0x11, 0x90]);
        let au = AvcAccessUnit { keyframe: false, sps: None, pps: None, avcc: Bytes::from_static(&[7]) };
        assert_eq!(&video_frame(&au)[..], &[0x27, 1, 0, 0, 0, 7]);
        assert_eq!(&video_end_of_sequence()[..], &[0x17, 2, 0, 0, 0]);
    }
}
