/* Red-team probe (tests/integration/test_redteam_guest.py), static, run as root in a guest.
   inotify N HOLD: create up to N inotify instances, report how many, hold them HOLD seconds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <mqueue.h>
#include <fcntl.h>

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "inotify") == 0) {
        /* optional 5th argument: that many processes (each with its own
           RLIMIT_NOFILE) share the N instances; the first reports the total */
        int n = atoi(argv[2]), hold = atoi(argv[3]), made = 0, err = 0;
        int procs = argc >= 5 ? atoi(argv[4]) : 1;
        if (procs > 1) {
            int pfd[2];
            if (pipe(pfd) != 0) return 2;
            for (int p = 0; p < procs; p++) {
                if (fork() == 0) {
                    int m = 0, e = 0;
                    for (; m < n / procs; m++)
                        if (inotify_init1(IN_CLOEXEC) < 0) { e = errno; break; }
                    int rec[2] = {m, e};
                    if (write(pfd[1], rec, sizeof rec) != sizeof rec) _exit(1);
                    sleep(hold);
                    _exit(0);
                }
            }
            for (int p = 0; p < procs; p++) {
                int rec[2];
                if (read(pfd[0], rec, sizeof rec) != sizeof rec) break;
                made += rec[0];
                if (rec[1]) err = rec[1];
            }
            printf("inotify made=%d errno=%d (%s) in %d processes\n", made, err, err ? strerror(err) : "-", procs);
            fflush(stdout);
            sleep(hold);
            return 0;
        }
        for (; made < n; made++) {
            if (inotify_init1(IN_CLOEXEC) < 0) { err = errno; break; }
        }
        printf("inotify made=%d errno=%d (%s)\n", made, err, err ? strerror(err) : "-");
        fflush(stdout);
        sleep(hold);
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "pktq") == 0) {
        /* pktq NSOCK PER HOLD: NSOCK packet sockets on lo; after each is made,
           PER 60 kB datagrams go to a closed UDP port on 127.0.0.1, queued
           (cloned) in the newest socket that still has room. */
        int n = atoi(argv[2]), per = atoi(argv[3]), hold = atoi(argv[4]), made = 0, err = 0;
        static char buf[60000];
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(9)};
        dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (; made < n; made++) {
            int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
            if (s < 0) { err = errno; break; }
            struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                                     .sll_ifindex = (int)if_nametoindex("lo")};
            int big = 1 << 20;   /* capped by the kernel at 2 * net.core.rmem_max */
            setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
            if (bind(s, (struct sockaddr *)&ll, sizeof ll) != 0) { err = errno; break; }
            for (int i = 0; i < per; i++) sendto(u, buf, sizeof buf, 0, (struct sockaddr *)&dst, sizeof dst);
        }
        printf("pktq made=%d errno=%d (%s)\n", made, err, err ? strerror(err) : "-");
        fflush(stdout);
        sleep(hold);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "mq") == 0) {
        /* mq N HOLD: create up to N POSIX message queues (default size), hold them */
        int n = atoi(argv[2]), hold = atoi(argv[3]), made = 0, err = 0;
        char name[64];
        for (; made < n; made++) {
            snprintf(name, sizeof name, "/rd3-%d-%d", (int)getpid(), made);
            mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, NULL);
            if (q == (mqd_t)-1) { err = errno; break; }
            mq_unlink(name);   /* lives as long as this process holds it */
        }
        printf("mq made=%d errno=%d (%s)\n", made, err, err ? strerror(err) : "-");
        fflush(stdout);
        sleep(hold);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "keyctl") == 0) {
        long r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 1);
        printf("keyctl native=%ld errno=%d\n", r, r < 0 ? errno : 0);
        long x = syscall(0x40000000 | 250, 0, -3, 1);   /* x32 keyctl */
        printf("keyctl x32=%ld errno=%d\n", x, x < 0 ? errno : 0);
        long a;   /* i386 keyctl (288) through int 0x80 */
        __asm__ volatile ("int $0x80" : "=a"(a) : "a"(288), "b"(0), "c"(-3), "d"(1) : "memory");
        printf("keyctl i386=%ld\n", a);
        return 0;
    }
    fprintf(stderr, "usage: redteam3 inotify N HOLD\n");
    return 2;
}
