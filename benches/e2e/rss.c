/*
 * rss OUT CMD [ARGS...]: runs CMD, writes its wait4() ru_maxrss (KiB) to OUT, exits as CMD did.
 *
 * Why a helper: Linux folds the pre-exec address space's high-water mark into a child's
 * ru_maxrss at execve, and a spawned child starts out sharing (vfork) or copying (fork) its
 * parent's memory. Timed from Python, every runtime would "peak" at Python's ~16 MiB. Forked
 * from this small static program instead, the floor is a few hundred KiB (the report shows it).
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rss OUT CMD [ARGS...]\n");
        return 127;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("rss: fork");
        return 127;
    }
    if (pid == 0) {
        execv(argv[2], argv + 2);
        perror("rss: execv");
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("rss: wait4");
        return 127;
    }
    FILE *f = fopen(argv[1], "w");
    if (f) {
        fprintf(f, "%ld\n", ru.ru_maxrss);
        fclose(f);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
