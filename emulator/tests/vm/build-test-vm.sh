#!/usr/bin/env bash
# Builds the tiny real VM the emulator tests boot: Debian's kernel and a busybox initramfs
# with the guest agent (the host's qemu-ga and its libraries), the virtio, ISO 9660, 9p and
# ACPI button modules, and stand-ins for the emulator image's services: HTTP on the four
# guest ports the emulator checks, the secret-rotation and host-mount programs it runs through
# the agent, and a power-button handler. Everything comes from Debian packages
# (apt-get download; nothing is installed). Usage: build-test-vm.sh OUT_DIR -> OUT_DIR/vmlinuz,
# OUT_DIR/initramfs.gz. Reuses a finished build.
set -euo pipefail
out="$1"
[ -s "$out/vmlinuz" ] && [ -s "$out/initramfs.gz" ] && exit 0
cache="${STACK_EDGE_CACHE:-/var/cache/stack-edge}/emulator-vm"
mkdir -p "$cache/debs" "$out"
# One build at a time (tests run in parallel): wait for the lock, then look again.
exec 9>"$out.lock"
flock 9
[ -s "$out/vmlinuz" ] && [ -s "$out/initramfs.gz" ] && exit 0
kernel_pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')"
kver="${kernel_pkg#linux-image-}"
(cd "$cache/debs" && { ls "$kernel_pkg"_*.deb >/dev/null 2>&1 || apt-get download -qq "$kernel_pkg"; } \
  && { ls busybox-static_*.deb >/dev/null 2>&1 || apt-get download -qq busybox-static; }) 2>/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$cache/debs/$kernel_pkg"_*.deb "$work/kernel"
dpkg-deb -x "$cache/debs"/busybox-static_*.deb "$work/busybox"
bb="$work/busybox/bin/busybox"
root="$work/root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,var/run,www/handler,www/minio/health,usr/local/bin,cfg,host}
cp "$bb" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"

# Kernel modules and everything they depend on.
moddir="$work/kernel/lib/modules/$kver"
declare -A done_mods=()
add_module() {
  local name="$1" file dep
  [ -n "${done_mods[$name]:-}" ] && return
  done_mods[$name]=1
  file="$(find "$moddir/kernel" -name "$name.ko" -o -name "${name//_/-}.ko" | head -1)"
  [ -n "$file" ] || { echo "build-test-vm: module $name not found" >&2; exit 1; }
  mkdir -p "$root/lib/modules/$kver/$(dirname "${file#"$moddir"/}")"
  cp "$file" "$root/lib/modules/$kver/${file#"$moddir"/}"
  for dep in $("$bb" strings "$file" | sed -n 's/^depends=//p' | tr ',' ' '); do add_module "$dep"; done
}
for m in virtio_pci virtio_net virtio_console virtio_blk virtio_balloon isofs 9pnet_virtio 9p button evdev; do add_module "$m"; done
cp "$moddir/modules.order" "$moddir/modules.builtin" "$root/lib/modules/$kver/" 2>/dev/null || true

# The guest agent with its libraries.
qga="$(command -v qemu-ga)"
mkdir -p "$root/usr/sbin"
cp "$qga" "$root/usr/sbin/qemu-ga"
for lib in $(ldd "$qga" | awk '/=>/ { print $3 } /ld-linux/ { print $1 }'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cat > "$root/usr/local/bin/trigger-fast-rotate" <<'SCRIPT'
#!/bin/sh
# Reads KEY=value lines on stdin (the rotated secrets), checks them, and keeps them 0600.
umask 077
cat > /run/rotated-secrets.env
for key in STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY \
    STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY CRON_SECRET; do
  grep -Eq "^$key=[0-9a-fA-F]{64}$" /run/rotated-secrets.env || { echo "missing or invalid $key" >&2; exit 1; }
done
# The stand-in backend shows a digest of what it now holds, never the values.
sha256sum /run/rotated-secrets.env | cut -d' ' -f1 > /www/rotated-digest
SCRIPT
cat > "$root/usr/local/bin/mount-host-fs" <<'SCRIPT'
#!/bin/sh
# Mounts the host folder the emulator hot-plugs after a resume (9p, tag hostfs), waiting for
# the hot-plugged device to appear.
grep -q " /host 9p " /proc/mounts && exit 0
for _ in $(seq 1 75); do
  mount -t 9p -o trans=virtio,version=9p2000.L hostfs /host 2>/dev/null && exit 0
  sleep 0.2
done
mount -t 9p -o trans=virtio,version=9p2000.L hostfs /host
SCRIPT
chmod 755 "$root"/usr/local/bin/*

cat > "$root/init" <<'SCRIPT'
#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/sbin:/usr/local/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs run /run
depmod
for m in virtio_pci virtio_net virtio_console virtio_blk virtio_balloon isofs 9pnet_virtio 9p button evdev; do modprobe "$m"; done
ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
# The config disk: the first virtio disk that mounts as ISO 9660 with a runtime.env.
for disk in /dev/vd?; do
  if mount -t iso9660 -o ro "$disk" /cfg 2>/dev/null; then
    [ -f /cfg/runtime.env ] && break
    umount /cfg
  fi
done
echo ok > /www/health; echo ok > /www/index.html; echo ok > /www/handler/sign-in; echo ok > /www/minio/health/live
cp /cfg/runtime.env /www/runtime.env 2>/dev/null
echo "booted $(cat /proc/uptime)" > /www/boot-id
# Dashboard and backend listen on <prefix>01 and <prefix>02, as in the real image.
prefix="$(sed -n 's/^STACK_EMULATOR_PORT_PREFIX=//p' /cfg/runtime.env 2>/dev/null)"
for port in "${prefix:-81}01" "${prefix:-81}02" 9090 9001; do httpd -p "$port" -h /www; done
# The ACPI power button (QMP system_powerdown): the first event on its input device powers off.
for event in /sys/class/input/event*; do
  if grep -q "Power Button" "$event/device/name" 2>/dev/null; then
    (dd if="/dev/input/$(basename "$event")" bs=24 count=1 >/dev/null 2>&1; sync; poweroff -f) &
  fi
done
for port in /sys/class/virtio-ports/*; do
  [ "$(cat "$port/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && qemu-ga -d -m virtio-serial -p "/dev/$(basename "$port")"
done
echo "stack-test-vm ready"
while true; do sleep 3600; done
SCRIPT
chmod 755 "$root/init"

cp "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
(cd "$root" && find . | "$bb" cpio -o -H newc 2>/dev/null | gzip -1) > "$out/initramfs.gz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initramfs.gz.tmp" "$out/initramfs.gz"
