/* Names of the notifications on fp's wires, one convention: "family/event". The agent sends
 * the streams' (watch, tt, trace; agent/fp_agent uses the same strings, checked by
 * tests/agent), the client makes gilstat's itself. protocol/methods.md and protocol/jsonl.md
 * document their params. */
#ifndef FP_NOTES_H
#define FP_NOTES_H

#define FP_NOTE_WATCH_EVENT "watch/event"
#define FP_NOTE_WATCH_END "watch/end"
#define FP_NOTE_TT_RECORD "tt/record"
#define FP_NOTE_TT_END "tt/end"
#define FP_NOTE_TRACE_EVENT "trace/event"
#define FP_NOTE_TRACE_SKIPPED "trace/skipped"
#define FP_NOTE_TRACE_END "trace/end"
/* Every trace notification starts with this. */
#define FP_NOTE_TRACE_PREFIX "trace/"

#define FP_NOTE_MONITOR_REPORT "monitor/report"
#define FP_NOTE_MONITOR_END "monitor/end"

#define FP_NOTE_GILSTAT_STARTED "gilstat/started"
#define FP_NOTE_GILSTAT_REPORT "gilstat/report"
#define FP_NOTE_GILSTAT_THRESHOLD "gilstat/threshold"
#define FP_NOTE_GILSTAT_STOPPED "gilstat/stopped"

#endif
