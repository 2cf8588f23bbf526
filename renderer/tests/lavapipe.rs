//! Renders on the real Vulkan device of this machine (lavapipe on CI).

use emcee_protocol::CameraPreset;
use emcee_renderer::{avatar::MOUTH_CENTER, camera::project_to_pixels, i420_len, Pose, Renderer};

const W: u32 = 320;
const H: u32 = 180;

fn luma_at(frame: &[u8], x: u32, y: u32) -> u8 {
    frame[(y * W + x) as usize]
}

fn mean_abs_diff_around(a: &[u8], b: &[u8], cx: f32, cy: f32, r: i32) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in (cy as i32 - r)..(cy as i32 + r) {
        for x in (cx as i32 - r)..(cx as i32 + r) {
            let i = (y as u32 * W + x as u32) as usize;
            sum += u64::from(a[i].abs_diff(b[i]));
            n += 1;
        }
    }
    sum as f64 / n as f64
}

#[test]
fn renders_the_avatar_and_converts_to_bt709_i420() {
    let bg = [30u8, 60, 90];
    let mut r = Renderer::new(W, H, bg).expect("a Vulkan device (lavapipe) is installed");
    let neutral = r.render(&Pose::default()).unwrap().to_vec();
    assert_eq!(neutral.len(), i420_len(W, H));

    // Corner pixel is background: Y, Cb, Cr match BT.709 limited range within 1.
    let [rf, gf, bf] = bg.map(|c| f64::from(c) / 255.0);
    let y = 0.2126 * rf + 0.7152 * gf + 0.0722 * bf;
    let expect_y = (16.0 + 219.0 * y).round() as i32;
    let expect_cb = (128.0 + 224.0 * (bf - y) / 1.8556).round() as i32;
    let expect_cr = (128.0 + 224.0 * (rf - y) / 1.5748).round() as i32;
    let luma = (W * H) as usize;
    assert!((i32::from(luma_at(&neutral, 0, 0)) - expect_y).abs() <= 1);
    assert!((i32::from(neutral[luma]) - expect_cb).abs() <= 1);
    assert!((i32::from(neutral[luma + luma / 4]) - expect_cr).abs() <= 1);

    // The face is lit skin: brighter than the dark background at the centre of the face.
    let (fx, fy) = project_to_pixels([0.0, 0.1, 0.8], CameraPreset::Medium, W, H);
    assert!(luma_at(&neutral, fx as u32, fy as u32) > expect_y as u8 + 40);

    // Opening the jaw changes the mouth region much more than anything else.
    let open = r.render(&Pose { jaw_open: 1.0, ..Pose::default() }).unwrap().to_vec();
    let (mx, my) = project_to_pixels(MOUTH_CENTER, CameraPreset::Medium, W, H);
    let mouth = mean_abs_diff_around(&neutral, &open, mx, my + 3.0, 6);
    let forehead = mean_abs_diff_around(&neutral, &open, fx, fy - 20.0, 6);
    assert!(mouth > 15.0, "mouth changed by {mouth}");
    assert!(forehead < 1.0, "forehead changed by {forehead}");

    // A smile moves the mouth corners (not the middle of the mouth, not the forehead).
    let smile = r.render(&Pose { smile: 1.0, ..Pose::default() }).unwrap().to_vec();
    let corner = mean_abs_diff_around(&neutral, &smile, mx + 8.0, my, 3);
    let forehead = mean_abs_diff_around(&neutral, &smile, fx, fy - 20.0, 6);
    assert!(corner > 8.0, "mouth corner changed by {corner}");
    assert!(forehead < 1.0, "forehead changed by {forehead}");

    // A full fade is black (BT.709 limited range: Y = 16, Cb = Cr = 128).
    let black = r.render(&Pose { fade_out: 1.0, ..Pose::default() }).unwrap().to_vec();
    assert!(black[..luma].iter().all(|&y| y == 16), "luma of a faded frame");
    assert!(black[luma..].iter().all(|&c| c == 128), "chroma of a faded frame");

    // Rendering is deterministic.
    let again = r.render(&Pose::default()).unwrap().to_vec();
    assert_eq!(again, neutral);

    if let Ok(dir) = std::env::var("EMCEE_DUMP_DIR") {
        std::fs::write(format!("{dir}/neutral.yuv"), &neutral).unwrap();
        std::fs::write(format!("{dir}/open.yuv"), &open).unwrap();
        std::fs::write(format!("{dir}/smile.yuv"), &smile).unwrap();
    }
}

#[test]
fn rejects_sizes_the_convert_pass_cannot_pack() {
    assert!(Renderer::new(100, 100, [0; 3]).is_err());
    assert!(Renderer::new(64, 33, [0; 3]).is_err());
}

#[test]
fn the_built_in_avatar_has_no_arms_or_eye_joints_to_move() {
    let mut r = Renderer::new(W, H, [30, 60, 90]).unwrap();
    let neutral = r.render(&Pose::default()).unwrap().to_vec();
    let waving = r.render(&Pose { arm_raise: 1.0, arm_swing: 0.5, gaze_yaw: 0.2, ..Pose::default() }).unwrap().to_vec();
    assert_eq!(neutral, waving);
}

#[test]
fn the_overlay_is_blended_over_the_picture_and_fades_with_it() {
    let bg = [30u8, 60, 90];
    let mut r = Renderer::new(W, H, bg).unwrap();
    let plain = r.render(&Pose::default()).unwrap().to_vec();
    // Opaque red in the top-left 16×16, half-covering white (premultiplied) at the top right.
    let mut rgba = vec![0u8; (W * H * 4) as usize];
    for y in 0..16 {
        for x in 0..16 {
            let i = ((y * W + x) * 4) as usize;
            rgba[i..i + 4].copy_from_slice(&[255, 0, 0, 255]);
            let j = ((y * W + W - 16 + x) * 4) as usize;
            rgba[j..j + 4].copy_from_slice(&[128, 128, 128, 128]);
        }
    }
    r.set_overlay(Some(&rgba));
    let over = r.render(&Pose::default()).unwrap().to_vec();
    let expect_red_y = (16.0 + 219.0 * 0.2126f64).round() as u8;
    assert!(luma_at(&over, 4, 4).abs_diff(expect_red_y) <= 1, "red: Y {}", luma_at(&over, 4, 4));
    let luma = (W * H) as usize;
    assert!(over[luma + luma / 4] > 200, "red: Cr {}", over[luma + luma / 4]);
    let half = luma_at(&over, W - 4, 4);
    assert!(half > luma_at(&plain, W - 4, 4) + 40 && half < 200, "half-covering white: Y {half}");
    // The rest of the picture is untouched.
    assert_eq!(&over[(W * 40) as usize..luma], &plain[(W * 40) as usize..luma]);
    // It fades out with the picture, and clears.
    let faded = r.render(&Pose { fade_out: 1.0, ..Pose::default() }).unwrap().to_vec();
    assert!(luma_at(&faded, 4, 4) <= 17, "black at the end of a fade: {}", luma_at(&faded, 4, 4));
    r.set_overlay(None);
    assert_eq!(r.render(&Pose::default()).unwrap(), &plain[..]);
}

#[test]
fn frames_in_flight_come_back_in_order_and_equal_to_frames_rendered_one_at_a_time() {
    let bg = [30u8, 60, 90];
    let poses: Vec<Pose> =
        (0..6).map(|i| Pose { jaw_open: i as f32 / 5.0, head_yaw: 0.05 * i as f32, ..Pose::default() }).collect();
    let mut overlay = vec![0u8; (W * H * 4) as usize];
    overlay[..16 * 4].fill(255);
    // What changes between frames (overlay on at frame 2, off at 4, a new background at 3)
    // belongs to the frames submitted after the change, even with a frame in flight.
    let change = |r: &mut Renderer, i: usize| match i {
        2 => r.set_overlay(Some(&overlay)),
        3 => r.set_scene(&emcee_protocol::Scene { background_rgb: [200, 10, 10], camera: CameraPreset::Medium }),
        4 => r.set_overlay(None),
        _ => {}
    };

    let mut one_at_a_time = Renderer::new(W, H, bg).unwrap();
    let mut expected = Vec::new();
    for (i, pose) in poses.iter().enumerate() {
        change(&mut one_at_a_time, i);
        expected.push(one_at_a_time.render(pose).unwrap().to_vec());
    }

    let mut pipelined = Renderer::new(W, H, bg).unwrap();
    assert!(pipelined.flush().unwrap().is_none(), "nothing in flight yet");
    let mut got = Vec::new();
    for (i, pose) in poses.iter().enumerate() {
        change(&mut pipelined, i);
        let previous = pipelined.render_next(pose).unwrap().map(<[u8]>::to_vec);
        assert_eq!(previous.is_some(), i > 0, "frame {i}: the one before it comes back");
        got.extend(previous);
    }
    got.extend(pipelined.flush().unwrap().map(<[u8]>::to_vec));
    assert!(pipelined.flush().unwrap().is_none());

    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(g == e, "frame {i} differs from the one rendered alone");
    }
    // The frames really differ from each other, so an order mix-up would show.
    assert!(expected.windows(2).all(|w| w[0] != w[1]));
}
