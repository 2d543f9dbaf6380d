/*
 * The no-op prover of `make bench`: follows the prover binary contract
 * (README) and does nothing else, so a run measures the orchestrator alone.
 *
 *   noop_prover --input-path IN --output-path OUT
 *
 * Reads the block number from IN, writes
 * {"block":N,"proof":"0x00","prover":"noop"} to OUT and exits 0.
 *
 * With NOOP_STAMP_DIR set, it also writes the CLOCK_REALTIME at which it
 * started (nanoseconds, taken before anything else) to NOOP_STAMP_DIR/N:
 * the latency bench reads it as "prover started".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    struct timespec started;
    /* First thing: the stamp must not include this program's own work. */
    clock_gettime(CLOCK_REALTIME, &started);
    const char *in = NULL, *out = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--input-path") == 0) in = argv[++i];
        else if (strcmp(argv[i], "--output-path") == 0) out = argv[++i];
    }
    if (!in || !out) {
        fprintf(stderr, "usage: %s --input-path IN --output-path OUT\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(in, "r");
    unsigned long long block;
    if (!f || fscanf(f, "%llu", &block) != 1) {
        fprintf(stderr, "noop_prover: cannot read a block number from %s\n", in);
        return 1;
    }
    fclose(f);
    f = fopen(out, "w");
    if (!f) {
        perror(out);
        return 1;
    }
    fprintf(f, "{\"block\":%llu,\"proof\":\"0x00\",\"prover\":\"noop\"}", block);
    if (fclose(f) != 0) {
        perror(out);
        return 1;
    }
    const char *stamps = getenv("NOOP_STAMP_DIR");
    if (stamps && *stamps) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%llu", stamps, block);
        f = fopen(path, "w");
        if (f) {
            fprintf(f, "%lld\n", (long long)started.tv_sec * 1000000000LL + started.tv_nsec);
            fclose(f);
        }
    }
    return 0;
}
