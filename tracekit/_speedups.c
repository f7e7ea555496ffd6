/* tracekit._speedups: the two callbacks every node pays for, compiled.
 *
 * The reference is tracekit/recorder/core.py: TraceRecorder.on_node_start (which builds the
 * step in StepBook._start, tracekit/recorder/steps.py) and TraceRecorder.on_node_end. HotPath
 * does their work for the common case only: a well-typed event, a key not already in flight,
 * values orjson serializes and whose JSON is final as it is (small, no null that might be a NaN).
 * For anything else it calls those Python methods *before it has changed any state*, so every
 * unusual case behaves exactly as in Python; once it has changed state (drawn a step number,
 * popped a key) it goes on as Python does, and a failure is an internal error, as in Python.
 * The recorder's own methods it needs are handed to HotPath as callables at install
 * (tracekit/recorder/hotpath.py); nothing is looked up by name. tests/test_speedups.py checks
 * that both record the same.
 *
 * Why C: at ~1 us per node, the interpreter's cost per line (attribute loads, calls, object
 * construction) is most of the bill; orjson's dumps is the only real work left at callback time.
 *
 * No stack left: when even the Python fallback cannot be entered (RecursionError), the call is
 * dropped and counted in recorder.misuse["internal_error"], never raised into the runner.
 *
 * Threading: runs under the GIL, and runs no Python code between reading and updating the
 * in-flight table (dict calls on str/int/task keys), so each update is atomic, as the Python
 * version's single dict call is. It is a single-phase-init module without Py_mod_gil: on a
 * free-threaded build tracekit/_native.py does not import it at all.
 *
 * ABI_VERSION (tracekit/_native.py checks it) changes whenever HotPath's keywords, the module's
 * functions or the field orders change, so a stale build is never used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#include <math.h>
#include <time.h>

#define TRACEKIT_SPEEDUPS_ABI 2

/* Step's slots, in the order tracekit/recorder/hotpath.py passes their member descriptors. */
enum {
    F_SEQ, F_NODE_ID, F_COMPONENT_ID, F_OPERATION, F_GIVEN_ID, F_PARENT_STEP_ID, F_ATTEMPT,
    F_START_NS, F_INPUT_SRC, F_CAPTURE, F_CTX_KEY, F_END_NS, F_STATUS, F_OUTPUT_SRC,
    F_STATE_DELTA_SRC, F_ISSUES, F_ERROR, N_FIELDS
};

/* NodeEvent's slots, in the order tracekit/recorder/hotpath.py passes them. */
enum { E_NODE_ID, E_COMPONENT_ID, E_OPERATION, E_PAYLOAD, E_STEP_ID, E_PARENT_STEP_ID, E_ATTEMPT,
       N_EVENT_FIELDS };

typedef struct {
    PyObject_HEAD
    PyObject *recorder;         /* held as a bound method's __self__ is: a runner may keep only
                                   our callbacks (the cycle through the recorder is collected) */
    PyObject *open;             /* recorder._open, an InFlight (dict subclass) */
    PyObject *ring_append;      /* recorder._ring.append */
    PyObject *finished;         /* recorder._finished.counter: an itertools.count of ended steps */
    PyObject *seq;              /* recorder._seq: the itertools.count numbering steps */
    int capture;                /* inputs are captured: capture_of(payload, src) */
    PyObject *internal_error;   /* recorder._internal_error(where) */
    PyObject *key_taken;        /* recorder._key_taken(key, held, step, event, reused_id) */
    PyObject *capture_of;       /* recorder._capture_of(payload, input_src) */
    PyObject *drop_oldest;      /* recorder._drop_oldest_in_flight() */
    PyObject *take;             /* recorder._open.take(key, popped): a Stack's newest step */
    PyObject *misused;          /* recorder._misused(kind, event) */
    PyObject *misuse;           /* recorder.misuse: counted into directly when no stack is left */
    PyTypeObject *step_type;    /* tracekit.trace.model.Step */
    Py_ssize_t offsets[N_FIELDS];
    PyTypeObject *event_type;   /* tracekit.observer.NodeEvent: its fields are read directly */
    Py_ssize_t event_offsets[N_EVENT_FIELDS];
    int monotonic;              /* perf_counter_ns is clock_gettime(CLOCK_MONOTONIC) here */
    PyObject *hash_source;      /* tracekit.capture.hashing.hash_source */
    PyObject *finish_source;    /* tracekit.capture.hashing.finish_source */
    PyObject *dumps;            /* orjson.dumps */
    PyObject *dumps_kwnames;    /* ("option",), interned: orjson matches keywords by identity */
    PyObject *sort_option;      /* orjson.OPT_SORT_KEYS */
    Py_ssize_t defer_limit;     /* tracekit.capture.hashing.DEFER_LIMIT */
    Py_ssize_t max_in_flight;   /* the recorder's _max_in_flight when it was made */
    PyObject *current_step;     /* tracekit.recorder._context.CURRENT_STEP_ID (a ContextVar) */
    PyObject *get_running_loop;
    PyObject *current_task;
    PyObject *perf_ns;          /* time.perf_counter_ns: the clock the Python side reads */
    PyObject *py_start;         /* TraceRecorder.on_node_start, unbound */
    PyObject *py_end;           /* TraceRecorder.on_node_end, unbound */
    char active;                /* cleared when the recorder is disabled: callers may hold
                                   our bound methods, so they must then defer to Python */
} HotPath;

/* Interned names: attributes read, statuses written, orjson's keyword, misuse kinds. */
static PyObject *s_node_id, *s_component_id, *s_operation, *s_step_id, *s_parent_step_id,
    *s_attempt, *s_payload, *s_in_flight, *s_completed, *s_internal_error, *s_option,
    *s_on_node_start, *s_on_node_end, *s_event, *s_output, *s_end_without_start;

/* What a fast path did: all of it; nothing (Python decides); failed before changing anything
 * (an error is set; Python decides); failed after (an internal error, as Python logs it). */
enum { DONE = 1, NOT_HERE = 0, FAILED = -1, FAILED_AFTER = -2 };

/* Store a new reference in a Step slot (steals `value`). */
static inline void
set_field(HotPath *hp, PyObject *step, int field, PyObject *value)
{
    PyObject **slot = (PyObject **)((char *)step + hp->offsets[field]);
    PyObject *old = *slot;
    *slot = value;
    Py_XDECREF(old);
}

static int
has_null(const char *data, Py_ssize_t size)
{
    const char *p = data, *end = data + size;
    while (end - p >= 4 && (p = memchr(p, 'n', (size_t)(end - p - 3))) != NULL) {
        if (memcmp(p, "null", 4) == 0)
            return 1;
        p++;
    }
    return 0;
}

/* Python: an Exception is handled by falling back; anything else (KeyboardInterrupt) propagates. */
static int
clear_if_exception(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyErr_Clear();
    return 0;
}

/* hash_source(value): serialize now; keep the bytes when final as they are, else ask Python. */
static PyObject *
source(HotPath *hp, PyObject *value)
{
    PyObject *args[3] = {NULL, value, hp->sort_option};
    PyObject *data = PyObject_Vectorcall(
        hp->dumps, args + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, hp->dumps_kwnames);
    if (data == NULL) {
        if (clear_if_exception() < 0)
            return NULL;
        return PyObject_CallOneArg(hp->hash_source, value);
    }
    if (PyBytes_CheckExact(data) && PyBytes_GET_SIZE(data) <= hp->defer_limit
        && (value == Py_None || !has_null(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))))
        return data;  /* None is null itself: no NaN to look for */
    PyObject *result = PyObject_CallFunctionObjArgs(hp->finish_source, value, data, NULL);
    Py_DECREF(data);
    return result;
}

/* The asyncio task running now, or the thread id (tracekit.recorder._context.execution_key). */
static PyObject *
execution_key(HotPath *hp)
{
    PyObject *loop = PyObject_CallNoArgs(hp->get_running_loop);
    if (loop == NULL)
        return NULL;
    if (loop != Py_None) {
        PyObject *task = PyObject_CallOneArg(hp->current_task, loop);
        Py_DECREF(loop);
        if (task == NULL)
            return NULL;
        if (task != Py_None)
            return task;
        Py_DECREF(task);
    }
    else {
        Py_DECREF(loop);
    }
    return PyLong_FromUnsignedLong(PyThread_get_thread_ident());
}

/* recorder.misuse["internal_error"] += 1 with no Python code: what the Python callbacks do when
 * not even a call is left on the stack. Never fails (a failure to count is dropped). */
static void
count_lost(HotPath *hp)
{
    PyObject *old = PyDict_GetItemWithError(hp->misuse, s_internal_error);  /* borrowed */
    long count = old != NULL && PyLong_CheckExact(old) ? PyLong_AsLong(old) : 0;
    PyObject *now = PyErr_Occurred() ? NULL : PyLong_FromLong(count + 1);
    if (now == NULL || PyDict_SetItem(hp->misuse, s_internal_error, now) < 0)
        PyErr_Clear();
    Py_XDECREF(now);
}

/* The call failed because the stack is full: drop it and count it, as Python does. */
static PyObject *
no_stack_left(HotPath *hp)
{
    PyErr_Clear();
    count_lost(hp);
    Py_RETURN_NONE;
}

/* Log an error raised after state changed, as the Python callbacks' `except Exception` does. */
static PyObject *
internal_error(HotPath *hp, PyObject *where)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return NULL;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
#endif
    /* _internal_error logs with exc_info=True: make `exc` the exception being handled. */
    PyObject *previous = PyErr_GetHandledException();
    PyErr_SetHandledException(exc);
    PyObject *result = PyObject_CallOneArg(hp->internal_error, where);
    PyErr_SetHandledException(previous);
    Py_XDECREF(previous);
    Py_XDECREF(exc);
    if (result == NULL) {
        if (PyErr_ExceptionMatches(PyExc_RecursionError))
            return no_stack_left(hp);
        return clear_if_exception() < 0 ? NULL : Py_NewRef(Py_None);
    }
    Py_DECREF(result);
    Py_RETURN_NONE;
}

/* The event's fields as new references; any other type of event is read by attribute. */
static int
read_event(HotPath *hp, PyObject *event, PyObject **fields)
{
    static PyObject **names[N_EVENT_FIELDS] = {
        &s_node_id, &s_component_id, &s_operation, &s_payload, &s_step_id, &s_parent_step_id,
        &s_attempt};
    int exact = Py_IS_TYPE(event, hp->event_type);
    for (int i = 0; i < N_EVENT_FIELDS; i++) {
        if (exact) {
            fields[i] = *(PyObject **)((char *)event + hp->event_offsets[i]);
            if (fields[i] == NULL)
                return NOT_HERE;  /* a field never set: Python raises the AttributeError */
            Py_INCREF(fields[i]);
        }
        else if ((fields[i] = PyObject_GetAttr(event, *names[i])) == NULL) {
            return FAILED;
        }
    }
    return DONE;
}

static PyObject *
now_ns(HotPath *hp)
{
#ifdef __linux__
    struct timespec ts;
    if (hp->monotonic && clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
        return PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
#endif
    return PyObject_CallNoArgs(hp->perf_ns);
}

/* The test of tracekit.capture.coerce.coerce_event (inlined in StepBook._start too): fields of the
 * types the envelope needs, so nothing needs correcting. */
static int
well_typed(PyObject *node_id, PyObject *component_id, PyObject *operation, PyObject *step_id,
           PyObject *parent, PyObject *attempt)
{
    if (!PyUnicode_CheckExact(node_id) || !PyUnicode_CheckExact(component_id)
        || !PyUnicode_CheckExact(operation))
        return 0;
    if (step_id != Py_None && !(PyUnicode_CheckExact(step_id) && PyUnicode_GET_LENGTH(step_id) > 0))
        return 0;
    if (parent != Py_None && !PyUnicode_CheckExact(parent))
        return 0;
    if (!PyLong_CheckExact(attempt))
        return 0;
    int overflow;
    long value = PyLong_AsLongAndOverflow(attempt, &overflow);
    return overflow > 0 || (overflow == 0 && value >= 1);
}

/* The fast start; see the outcomes above. */
static int
fast_start(HotPath *hp, PyObject *event)
{
    PyObject *fields[N_EVENT_FIELDS] = {NULL};
    PyObject *ctx = NULL, *src = NULL, *capture = NULL, *start_ns = NULL, *seq = NULL,
        *step = NULL, *key = NULL;
    int outcome = read_event(hp, event, fields);
    PyObject *node_id = fields[E_NODE_ID], *component_id = fields[E_COMPONENT_ID],
        *operation = fields[E_OPERATION], *payload = fields[E_PAYLOAD],
        *step_id = fields[E_STEP_ID], *parent = fields[E_PARENT_STEP_ID],
        *attempt = fields[E_ATTEMPT];
    if (outcome != DONE)
        goto done;
    outcome = FAILED;
    if (!well_typed(node_id, component_id, operation, step_id, parent, attempt)) {
        outcome = NOT_HERE;
        goto done;
    }
    if (!(ctx = execution_key(hp)) || !(src = source(hp, payload)))
        goto done;
    capture = hp->capture ? PyObject_CallFunctionObjArgs(hp->capture_of, payload, src, NULL)
                          : Py_NewRef(Py_None);
    if (capture == NULL)
        goto done;
    if (parent == Py_None) {
        Py_DECREF(parent);
        parent = fields[E_PARENT_STEP_ID] = NULL;
        if (PyContextVar_Get(hp->current_step, NULL, &parent) < 0)
            goto done;
        fields[E_PARENT_STEP_ID] = parent;
    }
    if (!(start_ns = now_ns(hp)) || !(seq = Py_TYPE(hp->seq)->tp_iternext(hp->seq)))
        goto done;
    /* The step number is drawn: from here on Python would not start over (it would log an
     * internal error and keep its count), so neither may we. */
    outcome = FAILED_AFTER;
    key = step_id != Py_None ? Py_NewRef(step_id) : PyTuple_Pack(2, ctx, node_id);
    if (key == NULL || !(step = hp->step_type->tp_alloc(hp->step_type, 0)))
        goto done;
    /* As Step.__init__ (tracekit/trace/model.py) sets them. */
    set_field(hp, step, F_SEQ, Py_NewRef(seq));
    set_field(hp, step, F_NODE_ID, Py_NewRef(node_id));
    set_field(hp, step, F_COMPONENT_ID, Py_NewRef(component_id));
    set_field(hp, step, F_OPERATION, Py_NewRef(operation));
    set_field(hp, step, F_GIVEN_ID, Py_NewRef(step_id));
    set_field(hp, step, F_PARENT_STEP_ID, Py_NewRef(parent));
    set_field(hp, step, F_ATTEMPT, Py_NewRef(attempt));
    set_field(hp, step, F_START_NS, Py_NewRef(start_ns));
    set_field(hp, step, F_INPUT_SRC, Py_NewRef(src));
    set_field(hp, step, F_CAPTURE, Py_NewRef(capture));
    set_field(hp, step, F_CTX_KEY, Py_NewRef(ctx));
    set_field(hp, step, F_END_NS, PyLong_FromLong(0));
    set_field(hp, step, F_STATUS, Py_NewRef(s_in_flight));
    set_field(hp, step, F_OUTPUT_SRC, Py_NewRef(Py_None));
    set_field(hp, step, F_STATE_DELTA_SRC, Py_NewRef(Py_None));
    set_field(hp, step, F_ISSUES, Py_NewRef(Py_None));
    set_field(hp, step, F_ERROR, Py_NewRef(Py_None));

    PyObject *held = PyDict_SetDefault(hp->open, key, step);  /* borrowed */
    if (held == NULL)
        goto done;
    PyObject *r = NULL;
    if (held != step) {
        /* The key is taken: Python stacks the step (and counts a reused step id). */
        PyObject *reused = step_id != Py_None ? Py_True : Py_False;
        PyObject *args[5] = {key, held, step, event, reused};
        Py_INCREF(held);
        r = PyObject_Vectorcall(hp->key_taken, args, 5, NULL);
        Py_DECREF(held);
    }
    else if (PyDict_GET_SIZE(hp->open) > hp->max_in_flight) {
        r = PyObject_CallNoArgs(hp->drop_oldest);
    }
    else {
        r = Py_NewRef(Py_None);
    }
    outcome = r == NULL ? FAILED_AFTER : DONE;
    Py_XDECREF(r);
done:
    for (int i = 0; i < N_EVENT_FIELDS; i++)
        Py_XDECREF(fields[i]);
    Py_XDECREF(ctx); Py_XDECREF(src); Py_XDECREF(capture); Py_XDECREF(start_ns);
    Py_XDECREF(seq); Py_XDECREF(step); Py_XDECREF(key);
    return outcome;
}

/* dict.pop(key, <missing>) once: a new reference, `missing` itself when absent, NULL on error. */
static PyObject *
pop_key(PyObject *dict, PyObject *key, PyObject *missing)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *value;
    int found = PyDict_Pop(dict, key, &value);
    if (found < 0)
        return NULL;
    return found ? value : Py_NewRef(missing);
#else
    return _PyDict_Pop(dict, key, missing);
#endif
}

/* The fast end, as on_node_end: the key is popped once (as Python's one `pop`); once it is out
 * of the in-flight table, failures are FAILED_AFTER. */
static int
fast_end(HotPath *hp, PyObject *event, PyObject *output)
{
    PyObject *key, *step_id, *node_id = NULL;
    int exact = Py_IS_TYPE(event, hp->event_type);
    if (exact) {
        step_id = *(PyObject **)((char *)event + hp->event_offsets[E_STEP_ID]);
        if (step_id == NULL)
            return NOT_HERE;
        Py_INCREF(step_id);
    }
    else if (!(step_id = PyObject_GetAttr(event, s_step_id))) {
        return FAILED;
    }
    if (step_id != Py_None) {
        key = step_id;  /* node_id is not read: Python does not read it either */
    }
    else {
        Py_DECREF(step_id);
        if (exact) {
            node_id = *(PyObject **)((char *)event + hp->event_offsets[E_NODE_ID]);
            if (node_id == NULL)
                return NOT_HERE;
            Py_INCREF(node_id);
        }
        else if (!(node_id = PyObject_GetAttr(event, s_node_id))) {
            return FAILED;
        }
        PyObject *ctx = execution_key(hp);
        key = ctx == NULL ? NULL : PyTuple_Pack(2, ctx, node_id);
        Py_XDECREF(ctx);
        Py_DECREF(node_id);
        if (key == NULL)
            return FAILED;
    }
    /* A failed pop (an unhashable node id) changed nothing: Python decides. */
    PyObject *step = pop_key(hp->open, key, Py_None);
    if (step == NULL) {
        Py_DECREF(key);
        return FAILED;
    }
    int outcome = FAILED_AFTER;
    if (Py_TYPE(step) != hp->step_type) {
        /* Nothing in flight, or a Stack of steps: as Python, InFlight.take decides. */
        PyObject *taken = PyObject_CallFunctionObjArgs(hp->take, key, step, NULL);
        Py_DECREF(step);
        step = taken;
    }
    Py_DECREF(key);
    if (step == NULL)
        return FAILED_AFTER;
    if (step == Py_None) {
        PyObject *r = PyObject_CallFunctionObjArgs(hp->misused, s_end_without_start, event, NULL);
        Py_DECREF(step);
        if (r == NULL)
            return FAILED_AFTER;
        Py_DECREF(r);
        return DONE;
    }
    if (Py_TYPE(step) != hp->step_type) {
        Py_DECREF(step);
        PyErr_SetString(PyExc_TypeError, "the in-flight table held something other than a Step");
        return FAILED_AFTER;
    }
    /* As recorder.on_node_end: end time, output, status; the ring must not keep tasks alive. */
    PyObject *end_ns = now_ns(hp);
    PyObject *out = end_ns == NULL ? NULL : source(hp, output);
    if (out != NULL) {
        set_field(hp, step, F_END_NS, end_ns);
        set_field(hp, step, F_OUTPUT_SRC, out);
        set_field(hp, step, F_STATUS, Py_NewRef(s_completed));
        set_field(hp, step, F_CTX_KEY, Py_NewRef(Py_None));
        end_ns = NULL;
        PyObject *r = PyObject_CallOneArg(hp->ring_append, step);
        if (r != NULL) {
            Py_DECREF(r);
            r = Py_TYPE(hp->finished)->tp_iternext(hp->finished);
            if (r != NULL) {
                Py_DECREF(r);
                outcome = DONE;
            }
        }
    }
    Py_XDECREF(end_ns);
    Py_DECREF(step);
    return outcome;
}

/* The arguments as the Python signature binds them (positional or by keyword): 0, or -1 when
 * Python would bind them otherwise or raise (then the Python method is called to do so). */
static int
bind_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject *const *names,
          int n, PyObject **out)
{
    if (nargs > n)
        return -1;
    for (int i = 0; i < n; i++)
        out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;
        for (int i = 0; i < n && found < 0; i++)
            if (name == names[i] || PyUnicode_Compare(name, names[i]) == 0)
                found = i;
        if (found < 0 || out[found] != NULL)
            return -1;
        out[found] = args[nargs + k];
    }
    for (int i = 0; i < n; i++)
        if (out[i] == NULL)
            return -1;
    return 0;
}

/* The Python method, called as the runner called us. */
static PyObject *
delegate(PyObject *method, PyObject *recorder, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    PyObject *bound = PyMethod_New(method, recorder);
    if (bound == NULL)
        return NULL;
    PyObject *result = PyObject_Vectorcall(bound, args, nargs, kwnames);
    Py_DECREF(bound);
    return result;
}

/* on_node_start(event) and on_node_end(event, output): the fast path, else the Python method. */
static PyObject *
callback(HotPath *hp, int is_start, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    /* No `enabled` lookup per call: setting TraceRecorder.enabled clears `active` instead. */
    if (hp->recorder == NULL)
        Py_RETURN_NONE;  /* cleared by the garbage collector */
    PyObject *recorder = Py_NewRef(hp->recorder);
    PyObject *names[2] = {s_event, s_output};
    PyObject *bound[2];
    int outcome = NOT_HERE;
    if (hp->active && bind_args(args, nargs, kwnames, names, is_start ? 1 : 2, bound) == 0)
        outcome = is_start ? fast_start(hp, bound[0])
                           : fast_end(hp, bound[0], bound[1]);
    PyObject *result = NULL;
    if (outcome == DONE)
        result = Py_NewRef(Py_None);
    else if (outcome == FAILED_AFTER)
        result = internal_error(hp, is_start ? s_on_node_start : s_on_node_end);
    else if (outcome == NOT_HERE || clear_if_exception() == 0) {
        result = delegate(is_start ? hp->py_start : hp->py_end, recorder, args, nargs, kwnames);
        /* The Python method never raises an Exception; RecursionError means it could not even
         * be entered (the runner has no stack left): drop the call, count it, never raise it.
         * A wrong call (TypeError from binding) is raised as Python raises it. */
        if (result == NULL && PyErr_ExceptionMatches(PyExc_RecursionError))
            result = no_stack_left(hp);
    }
    Py_DECREF(recorder);
    return result;
}

static PyObject *
HotPath_start(HotPath *hp, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return callback(hp, 1, args, nargs, kwnames);
}

static PyObject *
HotPath_end(HotPath *hp, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return callback(hp, 0, args, nargs, kwnames);
}

/* Where each __slots__ member of `type` named in `fields` (member descriptors) lives. */
static int
read_offsets(PyTypeObject *type, PyObject *fields, Py_ssize_t *offsets, Py_ssize_t n)
{
    if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != n) {
        PyErr_Format(PyExc_ValueError, "%s: expected a tuple of %zd member descriptors",
                     type->tp_name, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyTuple_GET_ITEM(fields, i);
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX
            || !PyType_IsSubtype(type, PyDescr_TYPE(d))) {
            PyErr_Format(PyExc_TypeError, "%s: field %zd is not one of its __slots__",
                         type->tp_name, i);
            return -1;
        }
        offsets[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    return 0;
}

static PyObject *
HotPath_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    /* tracekit/recorder/hotpath.py passes all of these by keyword; _speedups.pyi types them. */
    static char *names[] = {
        "recorder", "open", "ring_append", "finished_counter", "seq_counter", "capture",
        "step_type", "step_fields", "hash_source", "finish_source", "dumps", "sort_option",
        "defer_limit", "max_in_flight", "current_step", "get_running_loop", "current_task",
        "perf_ns", "monotonic", "py_start", "py_end", "event_type", "event_fields",
        "internal_error", "key_taken", "capture_of", "drop_oldest", "take", "misused", "misuse",
        NULL};
    PyObject *recorder, *open, *ring_append, *finished, *seq, *step_type, *step_fields,
        *hash_source, *finish_source, *dumps, *sort_option, *current_step, *get_running_loop,
        *current_task, *perf_ns, *py_start, *py_end, *event_type, *event_fields,
        *internal_error_fn, *key_taken, *capture_of, *drop_oldest, *take, *misused, *misuse;
    Py_ssize_t defer_limit, max_in_flight;
    int capture, monotonic;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "OO!OOOpO!OOOOOnnO!OOOpOOO!OOOOOOOO!:HotPath", names,
            &recorder, &PyDict_Type, &open, &ring_append, &finished, &seq, &capture,
            &PyType_Type, &step_type, &step_fields, &hash_source, &finish_source, &dumps,
            &sort_option, &defer_limit, &max_in_flight, &PyContextVar_Type, &current_step,
            &get_running_loop, &current_task, &perf_ns, &monotonic, &py_start, &py_end,
            &PyType_Type, &event_type, &event_fields, &internal_error_fn, &key_taken,
            &capture_of, &drop_oldest, &take, &misused, &PyDict_Type, &misuse))
        return NULL;
    PyObject *callables[] = {internal_error_fn, key_taken, capture_of, drop_oldest, take, misused};
    for (size_t i = 0; i < sizeof(callables) / sizeof(callables[0]); i++) {
        if (!PyCallable_Check(callables[i])) {
            PyErr_Format(PyExc_TypeError, "HotPath: %s must be callable", names[23 + i]);
            return NULL;
        }
    }
    if (!PyIter_Check(finished) || !PyIter_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "finished_counter and seq_counter must be iterators");
        return NULL;
    }
    HotPath *hp = (HotPath *)type->tp_alloc(type, 0);
    if (hp == NULL)
        return NULL;
    hp->step_type = (PyTypeObject *)Py_NewRef(step_type);
    hp->event_type = (PyTypeObject *)Py_NewRef(event_type);
    if (read_offsets(hp->step_type, step_fields, hp->offsets, N_FIELDS) < 0
        || read_offsets(hp->event_type, event_fields, hp->event_offsets, N_EVENT_FIELDS) < 0
        || !(hp->dumps_kwnames = PyTuple_Pack(1, s_option))) {
        Py_DECREF(hp);
        return NULL;
    }
    hp->recorder = Py_NewRef(recorder);
    hp->open = Py_NewRef(open);
    hp->ring_append = Py_NewRef(ring_append);
    hp->finished = Py_NewRef(finished);
    hp->seq = Py_NewRef(seq);
    hp->capture = capture;
    hp->hash_source = Py_NewRef(hash_source);
    hp->finish_source = Py_NewRef(finish_source);
    hp->dumps = Py_NewRef(dumps);
    hp->sort_option = Py_NewRef(sort_option);
    hp->defer_limit = defer_limit;
    hp->max_in_flight = max_in_flight;
    hp->current_step = Py_NewRef(current_step);
    hp->get_running_loop = Py_NewRef(get_running_loop);
    hp->current_task = Py_NewRef(current_task);
    hp->perf_ns = Py_NewRef(perf_ns);
    hp->monotonic = monotonic;
    hp->py_start = Py_NewRef(py_start);
    hp->py_end = Py_NewRef(py_end);
    hp->internal_error = Py_NewRef(internal_error_fn);
    hp->key_taken = Py_NewRef(key_taken);
    hp->capture_of = Py_NewRef(capture_of);
    hp->drop_oldest = Py_NewRef(drop_oldest);
    hp->take = Py_NewRef(take);
    hp->misused = Py_NewRef(misused);
    hp->misuse = Py_NewRef(misuse);
    hp->active = 1;
    return (PyObject *)hp;
}

static int
HotPath_traverse(HotPath *hp, visitproc visit, void *arg)
{
    Py_VISIT(hp->recorder); Py_VISIT(hp->open); Py_VISIT(hp->ring_append);
    Py_VISIT(hp->finished); Py_VISIT(hp->seq); Py_VISIT(hp->step_type);
    Py_VISIT(hp->hash_source); Py_VISIT(hp->finish_source); Py_VISIT(hp->dumps);
    Py_VISIT(hp->dumps_kwnames); Py_VISIT(hp->sort_option); Py_VISIT(hp->current_step);
    Py_VISIT(hp->get_running_loop); Py_VISIT(hp->current_task); Py_VISIT(hp->perf_ns);
    Py_VISIT(hp->py_start); Py_VISIT(hp->py_end); Py_VISIT(hp->event_type);
    Py_VISIT(hp->internal_error); Py_VISIT(hp->key_taken); Py_VISIT(hp->capture_of);
    Py_VISIT(hp->drop_oldest); Py_VISIT(hp->take); Py_VISIT(hp->misused); Py_VISIT(hp->misuse);
    return 0;
}

static int
HotPath_clear(HotPath *hp)
{
    Py_CLEAR(hp->recorder); Py_CLEAR(hp->open); Py_CLEAR(hp->ring_append);
    Py_CLEAR(hp->finished); Py_CLEAR(hp->seq); Py_CLEAR(hp->step_type);
    Py_CLEAR(hp->hash_source); Py_CLEAR(hp->finish_source); Py_CLEAR(hp->dumps);
    Py_CLEAR(hp->dumps_kwnames); Py_CLEAR(hp->sort_option); Py_CLEAR(hp->current_step);
    Py_CLEAR(hp->get_running_loop); Py_CLEAR(hp->current_task); Py_CLEAR(hp->perf_ns);
    Py_CLEAR(hp->py_start); Py_CLEAR(hp->py_end); Py_CLEAR(hp->event_type);
    Py_CLEAR(hp->internal_error); Py_CLEAR(hp->key_taken); Py_CLEAR(hp->capture_of);
    Py_CLEAR(hp->drop_oldest); Py_CLEAR(hp->take); Py_CLEAR(hp->misused); Py_CLEAR(hp->misuse);
    return 0;
}

static void
HotPath_dealloc(HotPath *hp)
{
    PyObject_GC_UnTrack(hp);
    HotPath_clear(hp);
    Py_TYPE(hp)->tp_free((PyObject *)hp);
}

static PyObject *
speedups_has_null(PyObject *module, PyObject *data)
{
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "has_null() takes bytes, not %.100s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    return PyBool_FromLong(has_null(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)));
}

/* tracekit.capture.hashing._has_non_finite for the JSON-native types: 1 a NaN or infinity is there,
 * 0 none, -2 a type only the Python walk handles (subclasses, dataclasses, anything else).
 * Runs no Python code, so the containers cannot change under it. */
static int
scan_non_finite(PyObject *v, int depth)
{
    if (v == Py_None || PyUnicode_CheckExact(v) || PyLong_CheckExact(v) || PyBool_Check(v))
        return 0;
    if (PyFloat_CheckExact(v))
        return !isfinite(PyFloat_AS_DOUBLE(v));
    if (depth > 512)
        return -2;
    int found = 0;
    if (PyDict_CheckExact(v)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (!found && PyDict_Next(v, &pos, &key, &value))
            found = scan_non_finite(value, depth + 1);
        return found;
    }
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        PyObject **items = PySequence_Fast_ITEMS(v);
        for (Py_ssize_t i = 0; !found && i < n; i++)
            found = scan_non_finite(items[i], depth + 1);
        return found;
    }
    return -2;
}

static PyObject *
speedups_non_finite(PyObject *module, PyObject *value)
{
    int found = scan_non_finite(value, 0);
    if (found < 0)
        Py_RETURN_NONE;
    return PyBool_FromLong(found);
}

static PyMethodDef module_functions[] = {
    {"has_null", (PyCFunction)speedups_has_null, METH_O,
     "has_null(data): whether b'null' occurs in data (memchr-based; as data.find(b'null') != -1)."},
    {"non_finite", (PyCFunction)speedups_non_finite, METH_O,
     "non_finite(value): whether a NaN or infinity hides in value; None when only the Python\n"
     "walk can tell (a subclass, a dataclass, another type)."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef HotPath_methods[] = {
    {"start", (PyCFunction)(void (*)(void))HotPath_start, METH_FASTCALL | METH_KEYWORDS,
     "start($self, /, event)\n--\n\nAs TraceRecorder.on_node_start."},
    {"end", (PyCFunction)(void (*)(void))HotPath_end, METH_FASTCALL | METH_KEYWORDS,
     "end($self, /, event, output)\n--\n\nAs TraceRecorder.on_node_end."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef HotPath_members[] = {
    {"active", T_BOOL, offsetof(HotPath, active), 0,
     "False: every call goes to the Python methods (set when the recorder is disabled)."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject HotPath_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracekit._speedups.HotPath",
    .tp_basicsize = sizeof(HotPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A recorder's on_node_start/on_node_end for the common case (see _speedups.c).",
    .tp_new = HotPath_new,
    .tp_traverse = (traverseproc)HotPath_traverse,
    .tp_clear = (inquiry)HotPath_clear,
    .tp_dealloc = (destructor)HotPath_dealloc,
    .tp_methods = HotPath_methods,
    .tp_members = HotPath_members,
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "tracekit._speedups",
    "The compiled common case of tracekit's observer callbacks.", -1, module_functions,
};

#define INTERN(var, text) if (!(var = PyUnicode_InternFromString(text))) return NULL

PyMODINIT_FUNC
PyInit__speedups(void)
{
    INTERN(s_node_id, "node_id");
    INTERN(s_component_id, "component_id");
    INTERN(s_operation, "operation");
    INTERN(s_step_id, "step_id");
    INTERN(s_parent_step_id, "parent_step_id");
    INTERN(s_attempt, "attempt");
    INTERN(s_payload, "payload");
    INTERN(s_in_flight, "in_flight");
    INTERN(s_completed, "completed");
    INTERN(s_internal_error, "internal_error");
    INTERN(s_option, "option");
    INTERN(s_end_without_start, "end_without_start");
    INTERN(s_on_node_start, "on_node_start");
    INTERN(s_on_node_end, "on_node_end");
    INTERN(s_event, "event");
    INTERN(s_output, "output");
    if (PyType_Ready(&HotPath_Type) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "HotPath", (PyObject *)&HotPath_Type) < 0
        || PyModule_AddIntConstant(module, "N_FIELDS", N_FIELDS) < 0
        || PyModule_AddIntConstant(module, "ABI_VERSION", TRACEKIT_SPEEDUPS_ABI) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
