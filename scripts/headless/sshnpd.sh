#!/bin/sh
# NoPorts daemon (sshnpd) without systemd: started at boot by cron, directly (headless,
# logs in ~/.sshnpd/logs) or inside a tmux session named sshnpd. Installed by
# scripts/install.sh, which writes this file once and never overwrites it: edit the
# settings below, they survive upgrades.
# shellcheck disable=SC2154
# SCRIPT METADATA
binary_path="$HOME/.local/bin"
manager_atsign="@example_client" # MANDATORY: Manager/client address(es), comma-separated
device_atsign="@example_device"  # MANDATORY: Device address (atSign)
device_name="default"            # Device name
user="$(id -un)"                 # MANDATORY: Username
v="-v"                           # Comment to disable verbose logging
s="-s"                           # Comment to disable accepting ssh public keys from managers
u="-u"                           # Comment to stop sharing username and device info
delegate_policy=""               # e.g. "-p @my_policy"
additional_args=""               # any other sshnpd options, e.g. "--permit-open localhost:22"
# END METADATA

sleep 10 # let the network come up
export USER="$user"
case $delegate_policy in @*) delegate_policy="-p $delegate_policy" ;; esac
while true; do
	# shellcheck disable=SC2086
	"$binary_path"/sshnpd -a "$device_atsign" ${manager_atsign:+-m "$manager_atsign"} -d "$device_name" $delegate_policy $s $u $v $additional_args
	sleep 10
done
