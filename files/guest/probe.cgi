#!/bin/sh
# CGI under busybox httpd: /cgi-bin/probe?ip=A.B.C.D&port=N makes this guest ping A.B.C.D
# and fetch http://A.B.C.D:N/, so a test outside can check traffic between two guests.
# Only a dotted quad and a number are accepted: the query never reaches a shell word.
printf 'Content-Type: text/plain\r\n\r\n'
ip=""
port=80
for pair in $(echo "$QUERY_STRING" | tr '&' ' '); do
    case "$pair" in
    ip=*) ip=${pair#ip=} ;;
    port=*) port=${pair#port=} ;;
    esac
done
if ! echo "$ip" | grep -qE '^[0-9]{1,3}(\.[0-9]{1,3}){3}$' || ! echo "$port" | grep -qE '^[0-9]{1,5}$'; then
    echo "bad query: want ip=A.B.C.D&port=N"
    exit 0
fi
if ping -c 3 -W 2 "$ip" >/dev/null 2>&1; then echo "ping $ip ok"; else echo "ping $ip failed"; fi
# busybox-static's wget crashes here (exit 139); nc speaks enough HTTP/1.0.
body=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 "$ip" "$port" 2>/tmp/probe.err | sed '1,/^\r*$/d')
rc=$?
[ -n "$body" ] || rc=1
if [ "$rc" -eq 0 ]; then
    echo "http $ip:$port ok $body"
else
    echo "http $ip:$port failed (exit $rc): $(head -c 200 /tmp/probe.err)"
fi
