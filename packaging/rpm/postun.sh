# psentinel %postun ($1: 0 erase, 1 upgrade). RPM has no purge: an edited
# /etc/psentinel/psentinel.cfg is kept as .rpmsave and /var/lib/psentinel (the operators'
# saved state) stays, as for other RPM daemons.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 0 ]; then
        busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
            ReloadConfig >/dev/null 2>&1 || :
    fi
fi
# cargo-generate-rpm packages files only, so rpm owns none of their directories: remove
# them when empty (an .rpmsave keeps /etc/psentinel).
if [ "$1" -eq 0 ]; then
    for d in /usr/share/doc/psentinel/examples/checks /usr/share/doc/psentinel/examples/haproxy \
             /usr/share/doc/psentinel/examples /usr/share/doc/psentinel/docs /usr/share/doc/psentinel \
             /etc/psentinel; do
        rmdir "$d" 2>/dev/null || :
    done
fi
