# psentinel %preun ($1: 0 erase, 1 upgrade): stop and disable on erase only.
if [ "$1" -eq 0 ]; then
    systemctl disable --now psentinel.service psentinel.socket >/dev/null 2>&1 || :
fi
