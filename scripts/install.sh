#!/bin/sh
# Installs (or upgrades in place) noports: the one multicall binary plus a link per applet
# (sshnpd, sshnp, npt, srv, srvd, at_activate, ...), and optionally a service wrapper:
# a systemd unit with its override.conf, or a cron @reboot job run headless or in tmux.
# Mirrors the commands of the NoPorts documentation's installer:
#   ./install.sh sshnpd                 binaries for this user (~/.local/bin)
#   sudo ./install.sh sshnpd            binaries system-wide (/usr/local/bin)
#   sudo ./install.sh systemd sshnpd    + /etc/systemd/system/sshnpd.service(.d/override.conf)
#   ./install.sh tmux sshnpd            + ~/.local/bin/sshnpd.sh started in tmux at boot
#   ./install.sh headless sshnpd        + ~/.local/bin/sshnpd.sh started by cron at boot
# An upgrade replaces the binary atomically and keeps keys (~/.atsign), override.conf files
# and the headless scripts; running services are restarted. Run ./install.sh --help.
set -eu

script_dir=$(cd "$(dirname -- "$0")" && pwd)
applets_fallback="sshnpd sshnp npt srvd srv at_activate npp_file npp_atserver"

usage() {
	cat <<USAGE
usage: install.sh [options] [command [unit]]
commands:
  binaries | all | sshnpd | sshnp | npt | srv | srvd | at_activate | npp_file | npp_atserver
                     install the noports binary and every applet link (the default)
  systemd <unit>     also install a systemd unit, unit: sshnpd | srvd | npp_file
  headless <job>     also install ~/.local/bin/<job>.sh, started by cron at boot; sshnpd | srvd
  tmux <service>     the same, run inside a tmux session named <service>; sshnpd | srvd
options:
  -b DIR             binary directory (default /usr/local/bin as root, else ~/.local/bin)
  -u USER            user the service runs as (default \$SUDO_USER, else the current user)
  --bin FILE         the noports binary to install (default: noports next to this script)
  --user, --system   install for the user or system-wide whoever runs this
  --root DIR         install into DIR as if it were / (staging; no services are touched)
  -c @atsign         sshnpd: manager (client) atSign(s)     -d @atsign  sshnpd: device atSign
  -n NAME            sshnpd: device name                     -p @atsign  sshnpd: policy atSign
  -a @atsign         srvd: relay atSign / npp_file: policy atSign
  -i ADDRESS         srvd: internet address
  -h, --help         this text
USAGE
}

die() {
	echo "install.sh: $*" >&2
	exit 1
}

# ---- arguments ----
bin_dir=""
user=""
src_bin=""
mode=""
root=""
mgr="" dev="" name="" policy="" atsign="" address=""
command="binaries"
unit=""
while [ $# -gt 0 ]; do
	case "$1" in
	-h | --help) usage; exit 0 ;;
	-b) bin_dir="${2:?-b needs a directory}"; shift ;;
	-u) user="${2:?-u needs a user}"; shift ;;
	--bin) src_bin="${2:?--bin needs a file}"; shift ;;
	--user) mode=user ;;
	--system) mode=system ;;
	--root) root="${2:?--root needs a directory}"; shift ;;
	-c) mgr="${2:?-c needs an atSign}"; shift ;;
	-d) dev="${2:?-d needs an atSign}"; shift ;;
	-n) name="${2:?-n needs a device name}"; shift ;;
	-p) policy="${2:?-p needs an atSign}"; shift ;;
	-a) atsign="${2:?-a needs an atSign}"; shift ;;
	-i) address="${2:?-i needs an address}"; shift ;;
	binaries | all | sshnpd | sshnp | npt | srv | srvd | at_activate | npp_file | npp_atserver)
		command=binaries ;;
	systemd | headless | tmux)
		command="$1"
		unit="${2:-}"
		[ -n "$unit" ] || die "$1 needs a unit: sshnpd or srvd$([ "$1" = systemd ] && echo ' or npp_file')"
		shift ;;
	*) usage >&2; die "unknown command or option: $1" ;;
	esac
	shift
done

case "$command:$unit" in
systemd:sshnpd | systemd:srvd | systemd:npp_file | headless:sshnpd | headless:srvd | tmux:sshnpd | tmux:srvd | binaries:) ;;
systemd:*) die "unknown systemd unit: $unit (sshnpd, srvd, npp_file)" ;;
*) die "unknown $command job: $unit (sshnpd, srvd)" ;;
esac
if [ -n "$name" ] && ! echo "$name" | grep -Eq '^[a-z0-9_][a-z0-9_-]{1,35}$'; then
	die "device name '$name': use a-z, 0-9, _ and - (2 to 36 characters, no leading -)"
fi

# ---- who and where ----
if [ -z "$mode" ]; then
	if [ "$(id -u)" -eq 0 ]; then mode=system; else mode=user; fi
fi
if [ -z "$user" ]; then
	if [ "$mode" = system ] && [ -n "${SUDO_USER:-}" ]; then user="$SUDO_USER"; else user="$(id -un)"; fi
fi
if [ "$user" = "$(id -un)" ]; then
	user_home="$HOME"
else
	user_home=$(getent passwd "$user" 2>/dev/null | cut -d: -f6)
	[ -n "$user_home" ] || die "unknown user $user"
fi
if [ -z "$bin_dir" ]; then
	if [ "$mode" = system ]; then bin_dir=/usr/local/bin; else bin_dir="$user_home/.local/bin"; fi
fi
systemd_dir=/etc/systemd/system
user_bin_dir="$user_home/.local/bin"
log_dir="$user_home/.sshnpd/logs"
# Paths on disk ($root prefixed) versus paths the installed files refer to.
R="$root"
[ -z "$src_bin" ] && src_bin="$script_dir/noports"
[ -f "$src_bin" ] || die "no noports binary at $src_bin (use --bin FILE)"
if [ "$command" = systemd ] && [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
	die "systemd units need root (sudo ./install.sh systemd $unit)"
fi

own() { # give a file in the user's home to the user when we are root for someone else
	if [ -z "$root" ] && [ "$(id -u)" -eq 0 ] && [ "$user" != root ]; then
		chown -h "$user" "$@" 2>/dev/null || true
	fi
}

# ---- the binary and its applet links ----
install_binaries() {
	dest="$R$bin_dir"
	mkdir -p "$dest"
	# Atomic replacement: running daemons keep the old file until they restart.
	cp "$src_bin" "$dest/.noports.new"
	chmod 755 "$dest/.noports.new"
	mv -f "$dest/.noports.new" "$dest/noports"
	echo "=> Installed $dest/noports ($("$dest/noports" --version 2>/dev/null || echo 'version unknown'))"
	applets=$("$dest/noports" --list 2>/dev/null || echo "$applets_fallback")
	for a in $applets; do
		link="$dest/$a"
		if [ -L "$link" ]; then
			rm -f "$link"
		elif [ -e "$link" ]; then
			# Another build of this tool (the official binaries, say): keep it as <name>.old,
			# as the documentation's installer does on upgrade.
			mv -f "$link" "$link.old"
			echo "=> Renamed existing $link to $link.old"
		fi
		ln -s noports "$link"
	done
	echo "=> Linked $(echo $applets | tr ' ' ',') to noports in $dest"
	# System-wide installs also give the user the ~/.local/bin names the documentation uses.
	if [ "$mode" = system ] && [ "$bin_dir" != "$user_bin_dir" ]; then
		mkdir -p "$R$user_bin_dir"
		for a in $applets; do
			[ -e "$R$user_bin_dir/$a" ] || [ -L "$R$user_bin_dir/$a" ] || {
				ln -s "$bin_dir/$a" "$R$user_bin_dir/$a"
				own "$R$user_bin_dir/$a"
			}
		done
	fi
	case ":$PATH:" in *":$bin_dir:"*) ;; *) echo "Note: $bin_dir is not on your PATH" ;; esac
}

# An empty ~/.ssh/authorized_keys for device installs (sshnpd -s appends to it).
setup_authorized_keys() {
	d="$R$user_home/.ssh"
	mkdir -p "$d"
	if [ ! -e "$d/authorized_keys" ]; then
		: >"$d/authorized_keys"
		chmod 600 "$d/authorized_keys"
		own "$d" "$d/authorized_keys"
	fi
}

# set_var FILE NAME VALUE: rewrite `NAME="..."` (headless scripts) or
# `Environment=NAME="..."` (override.conf) in place.
set_var() {
	file=$1 var=$2 val=$3
	esc=$(printf '%s' "$val" | sed 's/[\\&|]/\\&/g')
	sed -i.bak -e "s|^\(Environment=\)\{0,1\}$var=\"[^\"]*\"|\1$var=\"$esc\"|" "$file"
	rm -f "$file.bak"
}

configure() { # the -c/-d/-n/-p/-a/-i values, where given, into FILE
	file=$1
	case "$unit" in
	sshnpd)
		[ -n "$mgr" ] && set_var "$file" manager_atsign "$mgr"
		[ -n "$dev" ] && set_var "$file" device_atsign "$dev"
		[ -n "$name" ] && set_var "$file" device_name "$name"
		[ -n "$policy" ] && set_var "$file" delegate_policy "-p $policy"
		;;
	srvd)
		[ -n "$atsign" ] && set_var "$file" atsign "$atsign"
		[ -n "$address" ] && set_var "$file" internet_address "$address"
		;;
	npp_file)
		[ -n "$atsign" ] && set_var "$file" policy_atsign "$atsign"
		;;
	esac
	true
}

# ---- systemd ----
install_systemd() {
	[ -f "$script_dir/systemd/$unit.service" ] || die "unknown systemd unit: $unit (sshnpd, srvd, npp_file)"
	dir="$R$systemd_dir"
	mkdir -p "$dir/$unit.service.d"
	sed "s|/usr/local/bin/|$bin_dir/|g" "$script_dir/systemd/$unit.service" >"$dir/$unit.service"
	echo "=> Installed $dir/$unit.service"
	conf="$dir/$unit.service.d/override.conf"
	if [ -e "$conf" ]; then
		echo "=> Kept your settings in $conf"
	else
		sed "s|^User=.*|User=$user|" "$script_dir/systemd/$unit.service.d/override.conf" >"$conf"
		echo "=> Wrote $conf: edit it to set the atSigns and options"
	fi
	configure "$conf"
	[ "$unit" = sshnpd ] && setup_authorized_keys
	if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload || true
		if systemctl is-active --quiet "$unit.service"; then
			systemctl restart "$unit.service" && echo "=> Restarted $unit.service"
		else
			echo "To start now and at every boot: systemctl enable --now $unit.service"
		fi
	fi
}

# ---- cron jobs: headless and tmux ----
add_cron() { # add_cron LINE: once. Staged installs (--root) write ~/.sshnpd/crontab instead.
	if [ -n "$root" ]; then
		mkdir -p "$R$user_home/.sshnpd"
		staged="$R$user_home/.sshnpd/crontab"
		grep -Fxq -- "$1" "$staged" 2>/dev/null || printf '%s\n' "$1" >>"$staged"
		echo "=> Staged cron job in $staged: $1"
		return
	fi
	if ! command -v crontab >/dev/null 2>&1; then
		echo "Warning: no crontab command; add this line to your crontab yourself:"
		echo "  $1"
		return
	fi
	current=$(crontab -l 2>/dev/null || true)
	if printf '%s\n' "$current" | grep -Fxq -- "$1"; then
		echo "=> Cron job already installed"
	else
		{ [ -n "$current" ] && printf '%s\n' "$current"; printf '%s\n' "$1"; } | crontab -
		echo "=> Installed cron job: $1"
	fi
}

install_job_script() {
	[ -f "$script_dir/headless/$unit.sh" ] || die "unknown job: $unit (sshnpd, srvd)"
	mkdir -p "$R$user_bin_dir"
	script="$user_bin_dir/$unit.sh"
	if [ -e "$R$script" ]; then
		echo "=> Kept your settings in $R$script"
	else
		sed "s|^binary_path=\".*\"|binary_path=\"$bin_dir\"|" "$script_dir/headless/$unit.sh" >"$R$script"
		chmod 755 "$R$script"
		own "$R$script"
		echo "=> Wrote $R$script: edit it to set the atSigns and options"
	fi
	configure "$R$script"
	[ "$unit" = sshnpd ] && setup_authorized_keys
	true
}

install_headless() {
	install_job_script
	mkdir -p "$R$log_dir"
	own "$R$user_home/.sshnpd" "$R$log_dir"
	run="nohup $script > $log_dir/$unit.log 2> $log_dir/$unit.err"
	add_cron "@reboot $run"
	if [ -z "$root" ]; then
		# Upgrade: stop the applet started by this very script (found by its path, so nothing
		# else is touched); the script's loop starts it again, now from the new binary.
		restarted=""
		for pid in $(pgrep -f -- "$script" 2>/dev/null || true); do
			pkill -P "$pid" -x "$unit" 2>/dev/null && restarted=1
		done
		[ -n "$restarted" ] && echo "=> Stopped the running $unit; $script restarts it within 10 s"
		echo "To start now: $run &"
	fi
	echo "Note: $log_dir/$unit.log and .err grow without limit; rotate them with logrotate."
}

install_tmux() {
	install_job_script
	run="tmux new-session -d -s $unit && tmux send-keys -t $unit $script C-m"
	add_cron "@reboot $run"
	[ -n "$root" ] && return 0
	if command -v tmux >/dev/null 2>&1 && tmux has-session -t "$unit" 2>/dev/null; then
		tmux kill-session -t "$unit"
		tmux new-session -d -s "$unit" && tmux send-keys -t "$unit" "$script" C-m
		echo "=> Restarted the tmux session $unit"
	else
		echo "To start now: $run"
	fi
}

install_binaries
case "$command" in
systemd) install_systemd ;;
headless) install_headless ;;
tmux) install_tmux ;;
esac
