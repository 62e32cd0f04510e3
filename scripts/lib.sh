# Shared by the scripts in this directory: `source "$(dirname "$0")/lib.sh"`.

# wait_port PORT: waits up to 10 s until something accepts connections on 127.0.0.1:PORT.
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# idle_kib_per_connection BIN_DIR SERVER_PID URL COUNT WORKDIR: opens COUNT idle connections to
# URL with bench_load, and prints the server's RSS growth per connection, in KiB.
idle_kib_per_connection() {
  local bin="$1" pid="$2" url="$3" count="$4" work="$5" before after fifo load_pid
  before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  fifo="$work/idle.fifo"; rm -f "$fifo"; mkfifo "$fifo"
  "$bin/bench_load" "$url" --idle "$count" --hold 30 > "$fifo" &
  load_pid=$!
  read -r _ready < "$fifo"
  sleep 1
  after=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  kill "$load_pid" 2> /dev/null || true
  wait "$load_pid" 2> /dev/null || true
  rm -f "$fifo"
  python3 -c "print(round(($after - $before) / $count, 2))"
}

# Benchmark servers: PIN_SERVER / PIN_LOAD are command prefixes (not functions: `taskset` execs
# the program, so `$!` is the server's own PID) that put the server on CPU 0 and the load on
# CPU 1; stop_server kills the one in $server_pid and waits for it.
PIN_SERVER=(); PIN_LOAD=()
if [ "$(nproc)" -ge 2 ]; then PIN_SERVER=(taskset -c 0); PIN_LOAD=(taskset -c 1); fi
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
    server_pid=""
  fi
}
