# psentinel %post ($1: 1 first install, 2 upgrade). Same steps as the .deb's postinst.
systemd-sysusers psentinel.conf || :
if [ -d /run/systemd/system ]; then
    systemd-tmpfiles --create psentinel.conf >/dev/null 2>&1 || :
    busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        ReloadConfig >/dev/null 2>&1 || :
    # Also re-runs psentinel-generator: the socket unit learns the probe ports.
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable psentinel.socket psentinel.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl start psentinel.socket psentinel.service >/dev/null 2>&1 || :
    fi
elif [ -d /run/systemd/system ]; then
    # Only the service: the socket keeps the probe ports open across the restart, and
    # the operators' state is restored from /var/lib/psentinel/state.json.
    systemctl try-restart psentinel.service >/dev/null 2>&1 || :
fi
