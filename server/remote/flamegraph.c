/* The flame graph: one self-contained SVG (no network, no external script) that a browser
 * opens as is. Frames are laid out here, so the picture reads without scripting; a small
 * embedded script adds click-to-zoom, search (button, Ctrl-F or '/', with the matched
 * share of samples) and a details line. Colours tell Python, native and idle frames apart. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fp_profile.h"

#define FG_WIDTH 1200
#define FG_PAD 10
#define FG_FRAME_H 16
#define FG_FONT 12
#define FG_CHAR_W 7.0 /* average glyph width at FG_FONT, for fitting labels */
#define FG_TOP 70
#define FG_BOTTOM 34
/* Frames narrower than this share of the samples are left out (and so are their callees):
 * at full width they would be a twentieth of a pixel, and they would bloat the file. */
#define FG_MIN_SHARE (1.0 / 24000.0)

typedef struct fg_node {
    int frame; /* profile frame index, -1 for the root */
    uint64_t count, idle;
    uint64_t start; /* offset in samples from the left edge */
    int depth;
    int first_child, next_sibling; /* -1: none */
} fg_node;

typedef struct fg_tree {
    const fp_profile *p;
    fg_node *nodes;
    int n, cap;
    int max_depth;
} fg_tree;

/* ===================================================================== the tree */

static int fg_new_node(fg_tree *t, int frame, int depth)
{
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 1024;
        fg_node *nodes = realloc(t->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) return -1;
        t->nodes = nodes;
        t->cap = cap;
    }
    t->nodes[t->n] = (fg_node){frame, 0, 0, 0, depth, -1, -1};
    if (depth > t->max_depth) t->max_depth = depth;
    return t->n++;
}

static int fg_child(fg_tree *t, int parent, int frame)
{
    int last = -1;
    for (int c = t->nodes[parent].first_child; c >= 0; c = t->nodes[c].next_sibling) {
        if (t->nodes[c].frame == frame) return c;
        last = c;
    }
    int c = fg_new_node(t, frame, t->nodes[parent].depth + 1);
    if (c < 0) return -1;
    if (last < 0)
        t->nodes[parent].first_child = c;
    else
        t->nodes[last].next_sibling = c;
    return c;
}

/* Every thread's stacks merged into one tree rooted at "all". */
static int fg_build(fg_tree *t)
{
    if (fg_new_node(t, -1, 0) < 0) return -1;
    for (int i = 0; i < fp_profile_nstacks(t->p); i++) {
        const fp_profile_stack *s = fp_profile_stack_at(t->p, i);
        int node = 0;
        t->nodes[0].count += s->count;
        t->nodes[0].idle += s->idle;
        for (int k = 0; k < s->nframes; k++) {
            node = fg_child(t, node, s->frames[k]);
            if (node < 0) return -1;
            t->nodes[node].count += s->count;
            t->nodes[node].idle += s->idle;
        }
    }
    return 0;
}

static const char *fg_name(const fg_tree *t, int node)
{
    int f = t->nodes[node].frame;
    return f < 0 ? "all" : fp_profile_frame_at(t->p, f)->function;
}

/* Children in name order (as flame graphs do: the x axis is not time, and equal callers
 * line up), each starting where the previous sibling ends. */
static int fg_layout(fg_tree *t, int node)
{
    int n = 0;
    for (int c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
        n++;
    if (n == 0) return 0;
    int *kids = malloc((size_t)n * sizeof *kids);
    if (!kids) return -1;
    n = 0;
    for (int c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
        kids[n++] = c;
    for (int i = 1; i < n; i++) { /* insertion sort: fan-outs are small */
        int k = kids[i], j = i - 1;
        while (j >= 0 && strcmp(fg_name(t, kids[j]), fg_name(t, k)) > 0) {
            kids[j + 1] = kids[j];
            j--;
        }
        kids[j + 1] = k;
    }
    uint64_t at = t->nodes[node].start;
    t->nodes[node].first_child = kids[0];
    int r = 0;
    for (int i = 0; i < n && r == 0; i++) {
        t->nodes[kids[i]].start = at;
        t->nodes[kids[i]].next_sibling = i + 1 < n ? kids[i + 1] : -1;
        at += t->nodes[kids[i]].count;
        r = fg_layout(t, kids[i]);
    }
    free(kids);
    return r;
}

/* ===================================================================== XML text */

/* Length of the valid UTF-8 sequence at s, 0 when it is not one. */
static int fg_utf8_len(const unsigned char *s)
{
    int len = s[0] < 0x80         ? 1
              : (s[0] >> 5) == 6  ? 2
              : (s[0] >> 4) == 14 ? 3
              : (s[0] >> 3) == 30 ? 4
                                  : 0;
    for (int i = 1; i < len; i++)
        if ((s[i] >> 6) != 2) return 0;
    return len;
}

/* Writes at most max_chars characters of s, escaped for XML text and attributes. Names come
 * from the target's memory: anything that is not valid UTF-8 or is a control character is
 * replaced, so the file is always well-formed. */
static void fg_escape(FILE *f, const char *s, int max_chars)
{
    const unsigned char *u = (const unsigned char *)s;
    for (int chars = 0; *u && chars < max_chars; chars++) {
        int len = fg_utf8_len(u);
        if (len == 0) {
            fputc('?', f);
            u++;
            continue;
        }
        if (len > 1) {
            fwrite(u, 1, (size_t)len, f);
        } else if (*u == '&') {
            fputs("&amp;", f);
        } else if (*u == '<') {
            fputs("&lt;", f);
        } else if (*u == '>') {
            fputs("&gt;", f);
        } else if (*u == '"') {
            fputs("&quot;", f);
        } else if (*u == '\'') {
            fputs("&apos;", f);
        } else {
            fputc(*u < 0x20 || *u == 0x7f ? ' ' : *u, f);
        }
        u += len;
    }
}

static int fg_chars(const char *s)
{
    int n = 0;
    for (const unsigned char *u = (const unsigned char *)s; *u; u++)
        if ((*u >> 6) != 2) n++;
    return n;
}

/* ===================================================================== colours */

static uint32_t fg_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Stable colours: the same function has the same colour in every graph. */
static void fg_colour(const fg_tree *t, int node, char *buf, size_t size)
{
    const fg_node *n = &t->nodes[node];
    uint32_t h = fg_hash(fg_name(t, node));
    unsigned a = h % 55, b = (h >> 8) % 80, c = (h >> 16) % 40;
    if (n->frame < 0) {
        snprintf(buf, size, "rgb(200,200,200)");
    } else if (n->count && n->idle == n->count) {
        snprintf(buf, size, "rgb(%u,%u,%u)", 160 + c, 175 + c, 200 + c);
    } else if (fp_profile_frame_at(t->p, n->frame)->kind == FP_FRAME_NATIVE) {
        snprintf(buf, size, "rgb(%u,%u,%u)", 70 + c, 150 + b / 2, 200 + a);
    } else {
        snprintf(buf, size, "rgb(%u,%u,%u)", 200 + a, 90 + b, 40 + c);
    }
}

/* ===================================================================== SVG */

static const char fg_style[] =
    "text{font-family:Verdana,Helvetica,Arial,sans-serif;font-size:12px;fill:#000}\n"
    "#title{font-size:17px;text-anchor:middle}\n"
    "#subtitle{font-size:12px;text-anchor:middle;fill:#555}\n"
    ".button{cursor:pointer;fill:#236}\n"
    ".button:hover{text-decoration:underline}\n"
    ".hidden{display:none}\n"
    "g.f{cursor:pointer}\n"
    "g.f text{pointer-events:none}\n"
    "g.f:hover rect{stroke:#000;stroke-width:0.5}\n"
    "g.f.parent rect{opacity:0.5}\n";

/* Zoom, search and details. Positions come from the data-s/-n/-d attributes of each frame
 * (first sample, samples, depth), so the script never needs the profile itself. */
static const char fg_script[] =
    "'use strict';\n"
    "var W = WIDTH - 2 * PAD, frames = [], total = 0, zoomed = null, term = null;\n"
    "function $(id) { return document.getElementById(id); }\n"
    "function init() {\n"
    "  var gs = document.querySelectorAll('g.f');\n"
    "  for (var i = 0; i < gs.length; i++) {\n"
    "    var g = gs[i], t = g.querySelector('title').textContent;\n"
    "    var f = {g: g, s: +g.getAttribute('data-s'), n: +g.getAttribute('data-n'),\n"
    "             d: +g.getAttribute('data-d'), label: t.split('\\n')[0], info: t,\n"
    "             rect: g.querySelector('rect'), text: g.querySelector('text')};\n"
    "    f.fill = f.rect.getAttribute('fill');\n"
    "    if (f.d === 0) total = f.n;\n"
    "    frames.push(f);\n"
    "    g.addEventListener('click', zoomTo.bind(null, f));\n"
    "    g.addEventListener('mouseover', details.bind(null, f));\n"
    "    g.addEventListener('mouseout', details.bind(null, null));\n"
    "  }\n"
    "  $('reset').addEventListener('click', function () { zoomTo(null); });\n"
    "  $('search').addEventListener('click', askSearch);\n"
    "  $('clear').addEventListener('click', function () { search(null); });\n"
    "  window.addEventListener('keydown', function (e) {\n"
    "    if ((e.ctrlKey || e.metaKey) && e.key === 'f' || e.key === '/') {\n"
    "      e.preventDefault(); askSearch();\n"
    "    } else if (e.key === 'Escape') { search(null); zoomTo(null); }\n"
    "  });\n"
    "}\n"
    "function fit(f, w) {\n"
    "  var room = Math.floor((w - 6) / CHARW);\n"
    "  if (room < 3) return '';\n"
    "  return f.label.length <= room ? f.label : f.label.substring(0, room - 2) + '..';\n"
    "}\n"
    "function place(f, x, w) {\n"
    "  f.rect.setAttribute('x', x.toFixed(2)); f.rect.setAttribute('width', w.toFixed(2));\n"
    "  f.text.setAttribute('x', (x + 3).toFixed(2)); f.text.textContent = fit(f, w);\n"
    "}\n"
    "function zoomTo(z) {\n"
    "  if (z && z.d === 0) z = null;\n"
    "  zoomed = z;\n"
    "  var zs = z ? z.s : 0, zn = z ? z.n : total, zd = z ? z.d : 0;\n"
    "  frames.forEach(function (f) {\n"
    "    var inside = f.d >= zd && f.s >= zs && f.s + f.n <= zs + zn;\n"
    "    var above = f.d < zd && f.s <= zs && f.s + f.n >= zs + zn;\n"
    "    f.g.classList.toggle('hidden', !inside && !above);\n"
    "    f.g.classList.toggle('parent', above);\n"
    "    if (inside) place(f, PAD + (f.s - zs) / zn * W, f.n / zn * W);\n"
    "    else if (above) place(f, PAD, W);\n"
    "  });\n"
    "  $('reset').classList.toggle('hidden', !z);\n"
    "}\n"
    "function askSearch() {\n"
    "  var t = window.prompt('Search for a function or file (regular expression)', term || '');\n"
    "  if (t !== null) search(t);\n"
    "}\n"
    "function search(t) {\n"
    "  term = t ? t : null;\n"
    "  var re = null;\n"
    "  if (term) {\n"
    "    try { re = new RegExp(term); }\n"
    "    catch (e) { re = new RegExp(term.replace(/[.*+?^${}()|[\\]\\\\]/g, '\\\\$&')); }\n"
    "  }\n"
    "  var hits = [];\n"
    "  frames.forEach(function (f) {\n"
    "    var hit = re !== null && f.d > 0 && re.test(f.info.split('\\n').slice(0, 2).join(' '));\n"
    "    f.rect.setAttribute('fill', hit ? 'rgb(230,0,230)' : f.fill);\n"
    "    if (hit) hits.push(f);\n"
    "  });\n"
    "  /* The matched share counts each sample once, however many matching frames it has. */\n"
    "  hits.sort(function (a, b) { return a.s - b.s || b.n - a.n; });\n"
    "  var covered = 0, end = -1;\n"
    "  hits.forEach(function (f) {\n"
    "    if (f.s >= end) { covered += f.n; end = f.s + f.n; }\n"
    "    else if (f.s + f.n > end) { covered += f.s + f.n - end; end = f.s + f.n; }\n"
    "  });\n"
    "  $('matched').textContent = term ? 'Matched: ' + (total ? 100 * covered / total : 0)"
    ".toFixed(1) + '% (' + hits.length + ' frames)' : '';\n"
    "  $('clear').classList.toggle('hidden', !term);\n"
    "}\n"
    "function details(f) {\n"
    "  $('details').textContent = f ? f.info.replace(/\\n/g, ' | ') : ' ';\n"
    "}\n"
    "init();\n";

static void fg_header(FILE *f, const fg_tree *t, int height)
{
    const fp_profile_meta *m = fp_profile_meta_get(t->p);
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
            "<svg version=\"1.1\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "xmlns=\"http://www.w3.org/2000/svg\">\n"
            "<style type=\"text/css\"><![CDATA[\n%s]]></style>\n"
            "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fafaf6\"/>\n",
            FG_WIDTH, height, FG_WIDTH, height, fg_style, FG_WIDTH, height);
    fprintf(f, "<text id=\"title\" x=\"%d\" y=\"24\">fp perf: process %d (Python ", FG_WIDTH / 2,
            m->pid);
    fg_escape(f, m->python[0] ? m->python : "?", 32);
    fprintf(f,
            ")</text>\n<text id=\"subtitle\" x=\"%d\" y=\"44\">%llu samples in %.1f s at %.0f "
            "Hz (achieved %.1f Hz), %llu lost%s%s%s. Colours: python, "
            "native (blue), idle (grey); search with Ctrl-F</text>\n",
            FG_WIDTH / 2, (unsigned long long)fp_profile_samples(t->p), m->duration_s, m->rate_hz,
            m->achieved_hz, (unsigned long long)m->lost, m->native ? ", --native" : "",
            m->gil_only ? ", --gil" : "", m->idle ? ", --idle" : "");
    fprintf(f,
            "<text id=\"reset\" class=\"button hidden\" x=\"%d\" y=\"24\">Reset zoom</text>\n"
            "<text id=\"search\" class=\"button\" x=\"%d\" y=\"24\" "
            "text-anchor=\"end\">Search</text>\n"
            "<text id=\"clear\" class=\"button hidden\" x=\"%d\" y=\"44\" "
            "text-anchor=\"end\">Clear search</text>\n"
            "<text id=\"details\" x=\"%d\" y=\"%d\"> </text>\n"
            "<text id=\"matched\" x=\"%d\" y=\"%d\" text-anchor=\"end\"></text>\n",
            FG_PAD, FG_WIDTH - FG_PAD, FG_WIDTH - FG_PAD, FG_PAD, height - 12, FG_WIDTH - FG_PAD,
            height - 12);
}

static void fg_frame(FILE *f, const fg_tree *t, int node, int height)
{
    const fg_node *n = &t->nodes[node];
    uint64_t all = t->nodes[0].count ? t->nodes[0].count : 1;
    double x = FG_PAD + (double)n->start / (double)all * (FG_WIDTH - 2 * FG_PAD);
    double w = (double)n->count / (double)all * (FG_WIDTH - 2 * FG_PAD);
    int y = height - FG_BOTTOM - (n->depth + 1) * FG_FRAME_H;
    char label[1024], full[4200], fill[32];
    const fp_profile_frame *pf = n->frame >= 0 ? fp_profile_frame_at(t->p, n->frame) : NULL;
    if (pf) {
        fp_profile_frame_label(pf, false, label, sizeof label);
        snprintf(full, sizeof full, "%s", pf->file);
    } else {
        snprintf(label, sizeof label, "all");
        snprintf(full, sizeof full, "every sampled thread");
    }
    fg_colour(t, node, fill, sizeof fill);
    fprintf(f, "<g class=\"f\" data-s=\"%llu\" data-n=\"%llu\" data-d=\"%d\"><title>",
            (unsigned long long)n->start, (unsigned long long)n->count, n->depth);
    fg_escape(f, label, 1 << 20);
    fputc('\n', f);
    fg_escape(f, full, 1 << 20);
    fprintf(f, "\n%llu samples (%.2f%%)", (unsigned long long)n->count,
            100.0 * (double)n->count / (double)all);
    if (n->idle) fprintf(f, ", %llu idle", (unsigned long long)n->idle);
    fprintf(f,
            "</title><rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" rx=\"2\" "
            "fill=\"%s\"/><text x=\"%.2f\" y=\"%d\">",
            x, y, w, FG_FRAME_H - 1, fill, x + 3, y + FG_FRAME_H - 4);
    int room = (int)((w - 6) / FG_CHAR_W);
    if (room >= 3) {
        if (fg_chars(label) <= room) {
            fg_escape(f, label, room);
        } else {
            fg_escape(f, label, room - 2);
            fputs("..", f);
        }
    }
    fputs("</text></g>\n", f);
}

/* Depth first, skipping frames too narrow to see (with everything they called). */
static void fg_frames(FILE *f, const fg_tree *t, int node, int height, uint64_t min_count)
{
    if (t->nodes[node].count < min_count) return;
    fg_frame(f, t, node, height);
    for (int c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
        fg_frames(f, t, c, height, min_count);
}

static int fg_write(const fp_profile *p, FILE *f, fp_error *err)
{
    fg_tree t = {.p = p};
    if (fg_build(&t) != 0 || fg_layout(&t, 0) != 0) {
        free(t.nodes);
        return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    }
    int height = FG_TOP + (t.max_depth + 1) * FG_FRAME_H + FG_BOTTOM;
    fg_header(f, &t, height);
    uint64_t min_count = (uint64_t)((double)t.nodes[0].count * FG_MIN_SHARE);
    if (min_count < 1) min_count = 1;
    if (t.nodes[0].count == 0) {
        fprintf(f,
                "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">No samples: the process ran "
                "no Python code while it was sampled (try --idle).</text>\n",
                FG_WIDTH / 2, FG_TOP + 20);
    } else {
        fg_frames(f, &t, 0, height, min_count);
    }
    fprintf(f,
            "<script type=\"text/ecmascript\"><![CDATA[\nvar WIDTH = %d, PAD = %d, CHARW = "
            "%.1f;\n%s]]></script>\n</svg>\n",
            FG_WIDTH, FG_PAD, FG_CHAR_W, fg_script);
    free(t.nodes);
    return 0;
}

const fp_recorder fp_flamegraph_recorder = {
    .format = "svg",
    .default_file = "flamegraph.svg",
    .description = "interactive flame graph (SVG: open it in a browser)",
    .write = fg_write,
};
