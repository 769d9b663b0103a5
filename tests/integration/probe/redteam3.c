/* Red-team probe (tests/integration/test_redteam_guest.py), static, run as root in a guest.
   inotify N HOLD: create up to N inotify instances, report how many, hold them HOLD seconds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "inotify") == 0) {
        int n = atoi(argv[2]), hold = atoi(argv[3]), made = 0, err = 0;
        for (; made < n; made++) {
            if (inotify_init1(IN_CLOEXEC) < 0) { err = errno; break; }
        }
        printf("inotify made=%d errno=%d (%s)\n", made, err, err ? strerror(err) : "-");
        fflush(stdout);
        sleep(hold);
        return 0;
    }
    fprintf(stderr, "usage: redteam3 inotify N HOLD\n");
    return 2;
}
