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
