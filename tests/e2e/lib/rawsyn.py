#!/usr/bin/python3
"""rawsyn.py send DST DPORT SPORT COUNT [--udp] [--dstopts]
   rawsyn.py sniff IFACE OUTFILE READYFILE

send: COUNT hand-made TCP SYNs (--tinyfrag: IPv4 first fragments too short
to hold the destination port) (raw socket: no connect(), so no cgroup
connect hook sees them) or, with --udp, COUNT datagrams from an ordinary UDP
socket, from source port SPORT to DST:DPORT. --dstopts adds an IPv6
destination-options header, so the packet's transport header sits behind
an extension header. Prints {"sent": n, "errors": [...]}.

sniff: on IFACE, appends one JSON line per IPv4/IPv6 TCP SYN or UDP packet
({"dst", "dport", "sport", "proto"}) to OUTFILE until killed; creates
READYFILE once listening."""
import json, socket, struct, sys


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def tcp_syn(src, dst, sport, dport, fam):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 0x1000, 0, 5 << 4, 0x02, 64240, 0, 0)
    if fam == socket.AF_INET:
        pseudo = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst) + struct.pack("!BBH", 0, 6, len(hdr))
    else:
        pseudo = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst) + struct.pack("!I3xB", len(hdr), 6)
    return hdr[:16] + struct.pack("!H", csum(pseudo + hdr)) + hdr[18:]


def local_addr(dst, fam):
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.connect((dst, 9))
    a = u.getsockname()[0]
    u.close()
    return a


def send(argv):
    dst, dport, sport, count = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    out = {"sent": 0, "errors": []}
    if "--udp" in argv:
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.bind(("", sport))
        pkt = None
    else:
        s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_TCP)
        pkt = tcp_syn(local_addr(dst, fam), dst, sport, dport, fam)
    if "--tinyfrag" in argv:
        # IP_HDRINCL: an IPv4 first fragment (MF set, offset 0) whose 2
        # transport bytes hold only the source port: the destination port
        # is in no packet the egress program can read.
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        src = socket.inet_aton(local_addr(dst, fam))
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 22, 0x4d47, 0x2000, 64, 6, 0, src,
                         socket.inet_aton(dst))
        pkt = ip + struct.pack("!H", sport)
    anc = []
    if "--dstopts" in argv:
        # next header (filled by the kernel), length 0 (8 bytes), PadN of 4
        anc = [(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))]
    for _ in range(count):
        try:
            data = pkt if pkt is not None else b"mcpgate-egress-probe"
            s.sendmsg([data], anc, 0, (dst, dport if pkt is None else 0))
            out["sent"] += 1
        except OSError as e:
            out["errors"].append(e.strerror or str(e))
    print(json.dumps(out))


def sniff(argv):
    iface, outfile, ready = argv
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((iface, 0))
    f = open(outfile, "a", buffering=1)
    open(ready, "w").write("ready")
    while True:
        frame = s.recv(65535)
        eth = struct.unpack("!H", frame[12:14])[0]
        p = frame[14:]
        if eth == 0x0800 and len(p) >= 20:
            ihl = (p[0] & 15) * 4
            proto, dst, t = p[9], socket.inet_ntop(socket.AF_INET, p[16:20]), p[ihl:]
        elif eth == 0x86DD and len(p) >= 40:
            proto, dst, off = p[6], socket.inet_ntop(socket.AF_INET6, p[24:40]), 40
            while proto in (0, 43, 60) and len(p) >= off + 2:
                proto, off = p[off], off + (p[off + 1] + 1) * 8
            t = p[off:]
        else:
            continue
        if proto == 6 and len(t) >= 14 and t[13] & 0x12 != 0x02:
            continue  # only SYNs: the pod's RST answering a SYN-ACK is no new packet
        if proto in (6, 17) and len(t) >= 4:
            sport, dport = struct.unpack("!HH", t[:4])
            f.write(json.dumps({"dst": dst, "dport": dport, "sport": sport, "proto": proto}) + "\n")


if __name__ == "__main__":
    {"send": send, "sniff": sniff}[sys.argv[1]](sys.argv[2:])
