/* Attack probe for tests/integration/test_isolation.py: one static binary
 * copied into a guest, each subcommand tries one thing and prints
 * "ok ..." (it worked: exit 0) or "fail <errno name> ..." (exit 1).
 * Build: gcc -static -O2 -o probe probe.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <netinet/in.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int result(int rc, const char *what) {
    if (rc == 0) { printf("ok %s\n", what); return 0; }
    printf("fail %s %s\n", strerrorname_np(errno) ? strerrorname_np(errno) : "?", what);
    return 1;
}

static int do_connect(int argc, char **argv) {
    /* connect IP PORT TIMEOUT_MS [SRC_IP] */
    if (argc < 5) return 2;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
    inet_pton(AF_INET, argv[2], &a.sin_addr);
    if (argc > 5) {
        struct sockaddr_in b = {.sin_family = AF_INET};
        inet_pton(AF_INET, argv[5], &b.sin_addr);
        if (bind(s, (void *)&b, sizeof b) != 0) return result(-1, "bind");
    }
    if (connect(s, (void *)&a, sizeof a) != 0 && errno != EINPROGRESS) return result(-1, "connect");
    struct pollfd p = {.fd = s, .events = POLLOUT};
    if (poll(&p, 1, atoi(argv[4])) == 0) { printf("fail ETIMEDOUT connect\n"); return 1; }
    int err = 0; socklen_t l = sizeof err;
    getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) { errno = err; return result(-1, "connect"); }
    char buf[256] = {0};
    struct pollfd q = {.fd = s, .events = POLLIN};
    if (poll(&q, 1, atoi(argv[4])) > 0) { int n = read(s, buf, sizeof buf - 1); if (n < 0) n = 0; buf[n] = 0; }
    printf("ok connect %s\n", buf);
    return 0;
}

static int do_listen(int argc, char **argv) {
    /* listen PORT: answer every connection with "hello from <hostname>" (forks into background) */
    if (argc < 3) return 2;
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (bind(s, (void *)&a, sizeof a) || listen(s, 16)) return result(-1, "listen");
    if (fork() > 0) { printf("ok listen\n"); return 0; }
    setsid();
    for (int fd = 0; fd < 3; fd++) close(fd);
    char host[64] = {0}, msg[128];
    gethostname(host, sizeof host - 1);
    snprintf(msg, sizeof msg, "hello from %s\n", host);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c >= 0) { write(c, msg, strlen(msg)); close(c); }
    }
}

static int do_unix(int argc, char **argv) {
    /* unix PATH (or @abstract) */
    if (argc < 3) return 2;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    socklen_t len;
    if (argv[2][0] == '@') {
        strncpy(a.sun_path + 1, argv[2] + 1, sizeof a.sun_path - 2);
        len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(argv[2] + 1);
    } else {
        strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
        len = sizeof a;
    }
    return result(connect(s, (void *)&a, len), "unix connect");
}

static int do_arp(int argc, char **argv) {
    /* arp IFACE CLAIMED_IP TARGET_IP [COUNT]: "CLAIMED_IP is-at <my mac>" replies, broadcast */
    if (argc < 5) return 2;
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ARP));
    if (s < 0) return result(-1, "packet socket");
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, argv[2], IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFHWADDR, &ifr) || ioctl(s, SIOCGIFINDEX, &ifr) < 0) return result(-1, "ifreq");
    unsigned char mac[6];
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    ioctl(s, SIOCGIFINDEX, &ifr);
    unsigned char frame[42];
    struct ether_header *eh = (void *)frame;
    struct ether_arp *ea = (void *)(frame + sizeof *eh);
    memset(eh->ether_dhost, 0xff, 6);
    memcpy(eh->ether_shost, mac, 6);
    eh->ether_type = htons(ETHERTYPE_ARP);
    ea->arp_hrd = htons(ARPHRD_ETHER); ea->arp_pro = htons(ETHERTYPE_IP);
    ea->arp_hln = 6; ea->arp_pln = 4; ea->arp_op = htons(ARPOP_REPLY);
    memcpy(ea->arp_sha, mac, 6);
    inet_pton(AF_INET, argv[3], ea->arp_spa);
    memset(ea->arp_tha, 0xff, 6);
    inet_pton(AF_INET, argv[4], ea->arp_tpa);
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = ifr.ifr_ifindex, .sll_halen = 6};
    memset(to.sll_addr, 0xff, 6);
    int count = argc > 5 ? atoi(argv[5]) : 5;
    for (int i = 0; i < count; i++) {
        if (sendto(s, frame, sizeof frame, 0, (void *)&to, sizeof to) < 0) return result(-1, "sendto");
        usleep(50000);
    }
    printf("ok sent %d arp replies\n", count);
    return 0;
}

static int do_tcpfill(int argc, char **argv) {
    /* tcpfill PAIRS HOLD_SECONDS: loopback TCP pairs whose receivers never
       read; write on every sender until none takes more, report the bytes
       queued, then hold them for HOLD_SECONDS */
    if (argc < 4) return 2;
    int n = atoi(argv[2]), made = 0;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4096) || getsockname(l, (void *)&a, &al))
        return result(-1, "listen");
    int *senders = calloc(n, sizeof(int));
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (void *)&a, sizeof a) != 0 || accept(l, NULL, NULL) < 0) break;
        senders[made++] = c;
    }
    static char buf[1 << 16];
    long long total = 0;
    for (int round = 0; round < 100; round++) {
        long long before = total;
        for (int i = 0; i < made; i++) {
            ssize_t w;
            while ((w = send(senders[i], buf, sizeof buf, MSG_DONTWAIT)) > 0) total += w;
        }
        if (total == before) break;
        usleep(20000);
    }
    printf("ok tcpfill %d pairs %lld bytes\n", made, total);
    fflush(stdout);
    sleep(atoi(argv[3]));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *c = argv[1];
    if (!strcmp(c, "mknod") && argc >= 6) {   /* mknod PATH b|c MAJOR MINOR */
        mode_t type = argv[3][0] == 'b' ? S_IFBLK : S_IFCHR;
        return result(mknod(argv[2], type | 0600, makedev(atoi(argv[4]), atoi(argv[5]))), "mknod");
    }
    if (!strcmp(c, "open") && argc >= 3) {    /* open PATH: read-write, then read a byte */
        int fd = open(argv[2], O_RDWR);
        if (fd < 0) return result(-1, "open");
        char b;
        return result(read(fd, &b, 1) < 0 ? -1 : 0, "open+read");
    }
    if (!strcmp(c, "init_module")) {          /* a junk module image: EPERM before it is even parsed */
        static char junk[64] = "\177ELF";
        return result(syscall(SYS_init_module, junk, sizeof junk, ""), "init_module");
    }
    if (!strcmp(c, "finit_module") && argc >= 3) {
        int fd = open(argv[2], O_RDONLY);
        return result(syscall(SYS_finit_module, fd, "", 0), "finit_module");
    }
    if (!strcmp(c, "mount") && argc >= 5)     /* mount SRC DST FSTYPE */
        return result(mount(argv[2], argv[3], argv[4], 0, NULL), "mount");
    if (!strcmp(c, "write") && argc >= 4) {   /* write PATH TEXT */
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0) return result(-1, "open for write");
        return result(write(fd, argv[3], strlen(argv[3])) < 0 ? -1 : 0, "write");
    }
    if (!strcmp(c, "connect")) return do_connect(argc, argv);
    if (!strcmp(c, "listen")) return do_listen(argc, argv);
    if (!strcmp(c, "unix")) return do_unix(argc, argv);
    if (!strcmp(c, "arp")) return do_arp(argc, argv);
    /* kernel keys: not charged to the guest's memory (a seccomp filter refuses them) */
    if (!strcmp(c, "add_key"))   /* into the process keyring */
        return result(syscall(SYS_add_key, "user", "probe", "x", 1, -2) < 0 ? -1 : 0, "add_key");
    if (!strcmp(c, "keyctl"))    /* KEYCTL_JOIN_SESSION_KEYRING: a new keyring */
        return result(syscall(SYS_keyctl, 1, NULL) < 0 ? -1 : 0, "keyctl");
    if (!strcmp(c, "request_key"))
        return result(syscall(SYS_request_key, "user", "probe", NULL, 0) < 0 ? -1 : 0, "request_key");
#ifdef __x86_64__
    if (!strcmp(c, "keyctl32")) {  /* the same through the i386 ABI (int 0x80, keyctl = 288) */
        long r;
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(288L), "b"(1L), "c"(0L) : "memory");
        if (r < 0) errno = (int)-r;
        return result(r < 0 ? -1 : 0, "keyctl32");
    }
#endif
    if (!strcmp(c, "tcpfill")) return do_tcpfill(argc, argv);
    if (!strcmp(c, "reboot"))
        return result(syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc, NULL), "reboot");
    fprintf(stderr, "unknown command\n");
    return 2;
}
