/* libFuzzer target: the agent's own request handling (agent/native/server.c and clients.c), in
 * process: arbitrary bytes arrive on a client connection (a socket pair), in arbitrary pieces,
 * and go through the framing, JSON-RPC validation, the methods answered without the GIL (ping,
 * status, detach, shutdown) and the queueing of the others. No interpreter is here, and the
 * instance is set up as when the GIL is stuck (every worker slot taken by clients that left),
 * so that requests for Python are answered at once by the C side, without threads. Every answer
 * must be a well-framed JSON-RPC response. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "fp_rpc.h"

static fp_agent *fuzz_agent;

static fp_agent *fuzz_instance(void)
{
    if (fuzz_agent) return fuzz_agent;
    fuzz_agent = calloc(1, sizeof *fuzz_agent);
    pthread_cond_init(&fuzz_agent->workers_done, NULL);
    fuzz_agent->listen_fd = fuzz_agent->wake_fd = -1;
    fuzz_agent->state = FP_AGENT_LISTENING;
    fuzz_agent->orphans = FP_AGENT_MAX_ORPHANS;
    return fuzz_agent;
}

/* Reads what the agent sent; every message must be a response (the agent sends clients no
 * requests, and notifications only for streams, which need Python). */
static void fuzz_check_output(int fd, fp_frame_reader *out)
{
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        assert(fp_frame_reader_feed(out, buf, (size_t)n) == 0);
    for (;;) {
        char *body = NULL;
        size_t len = 0;
        const char *err = NULL;
        int rc = fp_frame_reader_next(out, &body, &len, &err);
        if (rc == FP_FRAME_MORE) return;
        assert(rc == FP_FRAME_OK);
        fp_rpc_msg m;
        assert(fp_rpc_parse(body, len, &m, NULL) == 0);
        assert(m.kind == FP_RPC_RESPONSE);
        fp_rpc_msg_free(&m);
        free(body);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    fp_agent *a = fuzz_instance();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    fp_agent_client *c = fp_agent_client_new(a, -1);
    pthread_mutex_lock(&fp_agent_lock);
    fp_agent_client_accepted(c, sv[0]);
    a->clients[0] = c;
    a->nclients = 1;
    pthread_mutex_unlock(&fp_agent_lock);

    fp_frame_reader out;
    fp_frame_reader_init(&out, FP_FRAME_DEFAULT_MAX);
    size_t piece = 1 + data[0] % 251;
    for (size_t off = 1; off < size && c->reading && !c->dead; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        int stop = fp_agent_server_feed(a, c, (const char *)data + off, n);
        fuzz_check_output(sv[1], &out);
        if (stop) break;
    }
    fuzz_check_output(sv[1], &out);
    fp_frame_reader_free(&out);

    fp_agent_client_disconnect(c); /* closes sv[0] */
    pthread_mutex_lock(&fp_agent_lock);
    a->clients[0] = NULL;
    a->nclients = 0;
    pthread_mutex_unlock(&fp_agent_lock);
    fp_agent_client_unref(c);
    close(sv[1]);
    return 0;
}
