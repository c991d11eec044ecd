/*
 * text-trace OUT LO HI CMD [ARGS...]: runs CMD under ptrace, single-stepping it and every
 * process it forks or clones until that process execs something else, and writes to OUT the
 * addresses in [LO, HI) (hex, the traced binary's code) in the order they were first executed,
 * one per line, and exits as CMD did once every traced process has exited or exec'd (a
 * created container's init is traced until `start` makes it exec).
 *
 * Why: benches/e2e/order.sh turns this into the linker's symbol order for the lean `berth`,
 * so that the code a container start runs sits together. The kernel maps file pages around
 * each fault (64 KiB), so scattered hot code makes nearly the whole text resident; perf's
 * hardware counters are not available on this machine, and valgrind does not follow clone3.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define GRAIN 16 /* bytes per recorded slot: smaller than any function worth ordering */

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: text-trace OUT LO HI CMD [ARGS...]\n");
        return 127;
    }
    uint64_t lo = strtoull(argv[2], NULL, 16), hi = strtoull(argv[3], NULL, 16);
    if (hi <= lo) {
        fprintf(stderr, "text-trace: empty range\n");
        return 127;
    }
    size_t slots = (hi - lo) / GRAIN + 1;
    unsigned char *seen = calloc(slots, 1);
    FILE *out = fopen(argv[1], "w");
    if (!seen || !out) {
        perror("text-trace");
        return 127;
    }
    pid_t root = fork();
    if (root < 0) {
        perror("text-trace: fork");
        return 127;
    }
    if (root == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        execv(argv[4], argv + 4);
        perror("text-trace: execv");
        _exit(127);
    }
    int status;
    waitpid(root, &status, 0);
    ptrace(PTRACE_SETOPTIONS, root, 0,
           PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
               PTRACE_O_EXITKILL);
    /* The root's first exec is CMD itself; any later exec (of any task) leaves the binary. */
    int root_execd = 0, code = 0;
    ptrace(PTRACE_SINGLESTEP, root, 0, 0);
    for (;;) {
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (pid == root)
                code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            continue;
        }
        if (!WIFSTOPPED(status))
            continue;
        int sig = WSTOPSIG(status), event = status >> 16, deliver = 0;
        if (sig == SIGTRAP && event == PTRACE_EVENT_EXEC) {
            if (pid == root && !root_execd) {
                root_execd = 1;
            } else {
                ptrace(PTRACE_DETACH, pid, 0, 0);
                continue;
            }
        } else if (sig == SIGTRAP && event == 0) {
            struct user_regs_struct regs;
            if (ptrace(PTRACE_GETREGS, pid, 0, &regs) == 0 && regs.rip >= lo && regs.rip < hi) {
                size_t slot = (regs.rip - lo) / GRAIN;
                if (!seen[slot]) {
                    seen[slot] = 1;
                    fprintf(out, "%llx\n", (unsigned long long)regs.rip);
                }
            }
        } else if (sig == SIGTRAP || sig == SIGSTOP) {
            /* a fork/clone event, or a new child's first stop */
        } else {
            deliver = sig;
        }
        ptrace(PTRACE_SINGLESTEP, pid, 0, deliver);
    }
    fclose(out);
    return code;
}
