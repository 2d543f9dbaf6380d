/*
 * The floor of `make bench`: the per-job work of `orchestrator run` written
 * as a plain C loop, with nothing else around it. Per job, as the
 * orchestrator's ProcessRunner does: create the job dir, write input.json
 * with the block number, posix_spawn the prover with
 * `--input-path IN --output-path OUT`, waitpid, read output.json, remove the
 * files and the dir. WORKERS threads run such loops side by side, one block
 * in WORKERS each, as the orchestrator's workers do.
 *
 *   floor PROVER JOB_ROOT FROM COUNT WORKERS
 *
 * Prints nothing on success; the harness times it from outside (wall clock,
 * and the rusage of the process and its children), as it times the
 * orchestrator.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *prover;
static const char *root;
static unsigned long long from, count;
static unsigned workers;

static void die(const char *what, const char *path) {
    fprintf(stderr, "floor: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void *loop(void *arg) {
    unsigned w = (unsigned)(size_t)arg;
    char dir[4096], in[4200], out[4200], text[32], buf[256];
    for (unsigned long long i = w; i < count; i += workers) {
        unsigned long long block = from + i;
        snprintf(dir, sizeof dir, "%s/job-%u-%llu", root, w, block);
        snprintf(in, sizeof in, "%s/input.json", dir);
        snprintf(out, sizeof out, "%s/output.json", dir);
        if (mkdir(dir, 0700) != 0) die("mkdir", dir);

        int fd = open(in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) die("open", in);
        int n = snprintf(text, sizeof text, "%llu", block);
        if (write(fd, text, (size_t)n) != n) die("write", in);
        close(fd);

        char *args[] = {(char *)prover, "--input-path", in, "--output-path", out, NULL};
        pid_t pid;
        int rc = posix_spawn(&pid, prover, NULL, NULL, args, environ);
        if (rc != 0) {
            errno = rc;
            die("posix_spawn", prover);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
            if (errno != EINTR) die("waitpid", prover);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "floor: prover failed on block %llu\n", block);
            exit(1);
        }

        fd = open(out, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("open", out);
        ssize_t got = read(fd, buf, sizeof buf - 1);
        if (got <= 0) die("read", out);
        close(fd);

        if (unlink(in) != 0) die("unlink", in);
        if (unlink(out) != 0) die("unlink", out);
        if (rmdir(dir) != 0) die("rmdir", dir);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s PROVER JOB_ROOT FROM COUNT WORKERS\n", argv[0]);
        return 2;
    }
    prover = argv[1];
    root = argv[2];
    from = strtoull(argv[3], NULL, 10);
    count = strtoull(argv[4], NULL, 10);
    workers = (unsigned)strtoul(argv[5], NULL, 10);
    if (workers == 0) workers = 1;
    if (mkdir(root, 0700) != 0 && errno != EEXIST) die("mkdir", root);
    pthread_t threads[256];
    if (workers > 256) workers = 256;
    for (unsigned w = 0; w < workers; w++)
        if (pthread_create(&threads[w], NULL, loop, (void *)(size_t)w) != 0) die("pthread_create", "");
    for (unsigned w = 0; w < workers; w++) pthread_join(threads[w], NULL);
    return 0;
}
