#!/usr/bin/env bash
# The demo: set up, start a local nginx-rtmp, stream the demo show into it for RUN_FOR seconds
# (default 60), and leave a recording and a thumbnail under run/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/emcee-xdg-$(id -u)}

run_for=${RUN_FOR:-60}
port=${RTMP_PORT:-1935}
dir=$PWD/run/demo
rm -rf "$dir" && mkdir -p "$dir"
bash scripts/nginx-rtmp.sh start "$dir/nginx" "$port"
trap 'bash scripts/nginx-rtmp.sh stop "$dir/nginx"' EXIT

url="rtmp://127.0.0.1:$port/live/demo"
echo "Streaming the demo show to $url for ${run_for}s."
echo "Watch it live with:  ffplay $url   (or open that URL in VLC)"
./target/release/emcee run --config examples/demo.toml --output "$url" --run-for "$run_for"

bash scripts/nginx-rtmp.sh stop "$dir/nginx"
trap - EXIT
sleep 1
cp "$dir/nginx/rec/demo.flv" "$dir/recording.flv"
ffmpeg -nostdin -v error -y -ss 3 -i "$dir/recording.flv" -frames:v 1 "$dir/thumbnail.png"
ffprobe -v error -show_entries stream=codec_name,width,height,r_frame_rate,sample_rate,channels \
  -of default=nw=1 "$dir/recording.flv"
echo "Recording: $dir/recording.flv"
echo "Thumbnail: $dir/thumbnail.png"
