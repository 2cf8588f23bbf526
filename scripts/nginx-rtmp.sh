#!/usr/bin/env bash
# Starts nginx with the RTMP module as an unprivileged local process.
#   scripts/nginx-rtmp.sh start DIR PORT [TLS_PORT CERT KEY]
#                                          -> ingest at rtmp://127.0.0.1:PORT/live/<key> (and
#                                             rtmps://localhost:TLS_PORT/live/<key> with a TLS
#                                             port), recordings in DIR/rec, pid in DIR/nginx.pid;
#                                             rtmp://127.0.0.1:PORT/pass/<key> records nothing
#                                             (for soaks)
#                                          With AUTH_URL set, also rtmp://127.0.0.1:PORT/guarded/<key>,
#                                          whose publishes nginx asks AUTH_URL about (on_publish).
#   scripts/nginx-rtmp.sh stop DIR
set -euo pipefail
cmd=$1 dir=$(realpath -m "$2")
case "$cmd" in
start)
  port=$3 tls_port=${4:-}
  mkdir -p "$dir/rec" "$dir/tmp" "$dir/logs"
  module=/usr/lib/nginx/modules/ngx_rtmp_module.so
  tls_block="" tls_module="" guarded=""
  [ -n "${AUTH_URL:-}" ] && guarded="application guarded { live on; on_publish $AUTH_URL; }"
  if [ -n "$tls_port" ]; then
    tls_module="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
    tls_block="stream { server { listen 127.0.0.1:$tls_port ssl; ssl_certificate $5; ssl_certificate_key $6; proxy_pass 127.0.0.1:$port; } }"
  fi
  # As root, nginx would drop its workers to `nobody`, who cannot write the recordings here.
  user_line=""
  [ "$(id -u)" = 0 ] && user_line="user root;"
  cat > "$dir/nginx.conf" <<CONF
load_module $module;
$tls_module
$user_line
daemon on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
worker_processes 1;
events { worker_connections 64; }
rtmp {
  server {
    listen 127.0.0.1:$port;
    chunk_size 4096;
    application live {
      live on;
      record all;
      record_path $dir/rec;
      record_unique off;
    }
    application pass {
      live on;
    }
    $guarded
  }
}
$tls_block
CONF
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && exit 0
    sleep 0.1
  done
  echo "nginx-rtmp did not start listening on $port; see $dir/logs/error.log" >&2
  exit 1
  ;;
stop)
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  ;;
esac
