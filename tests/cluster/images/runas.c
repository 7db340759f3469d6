/* runas UID:GID COMMAND...: drops root for the given numeric user and group and runs COMMAND.
 * The test cluster's postgres:15 image starts as root (to own its data directory, which is a
 * fresh mount) and runs the server as postgres, like the official image does with gosu. */
#include <grp.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    unsigned uid, gid;
    if (argc < 3 || sscanf(argv[1], "%u:%u", &uid, &gid) != 2) {
        fprintf(stderr, "usage: runas UID:GID COMMAND...\n");
        return 2;
    }
    if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        perror("runas");
        return 1;
    }
    execvp(argv[2], argv + 2);
    perror("runas: exec");
    return 127;
}
