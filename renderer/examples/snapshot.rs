//! `cargo run --release -p emcee-renderer --example snapshot -- AVATAR.vrm OUT.yuv [jaw blink smile yaw arm swing gaze]`:
//! renders one 640×360 frame of a glTF/VRM avatar (I420) to look at with
//! `ffmpeg -f rawvideo -pix_fmt yuv420p -s 640x360 -i OUT.yuv OUT.png`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(avatar), Some(out)) = (args.get(1), args.get(2)) else {
        return Err("usage: snapshot AVATAR.vrm OUT.yuv [jaw blink smile yaw arm swing gaze]".into());
    };
    let value = |i: usize| args.get(i).and_then(|v| v.parse::<f32>().ok()).unwrap_or(0.0);
    let model = emcee_renderer::model::Model::from_glb(&std::fs::read(avatar)?)?;
    let mut renderer = emcee_renderer::Renderer::with_model(640, 360, [31, 53, 80], model)?;
    let pose = emcee_renderer::Pose {
        jaw_open: value(3),
        blink: value(4),
        smile: value(5),
        head_yaw: value(6),
        arm_raise: value(7),
        arm_swing: value(8),
        gaze_yaw: value(9),
        ..Default::default()
    };
    std::fs::write(out, renderer.render(&pose)?)?;
    Ok(())
}
