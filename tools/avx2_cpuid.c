/* Make this process see an AVX2 CPU: CPUID answers with AVX-512, AVX-VNNI and AMX hidden.
 *
 * Why by hand: ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA limit PyTorch only. onnxruntime's MLAS,
 * numpy and every other library choose their kernels from the CPUID instruction, and no setting
 * of theirs caps it. Emulators that do (Intel SDE, qemu -cpu Haswell) translate every instruction,
 * so their timings mean nothing. Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, x86 "cpuid_fault"
 * flag) makes each CPUID a fault instead: this library, loaded with LD_PRELOAD, turns it on at
 * start-up and answers each faulting CPUID itself with the real values minus those feature bits.
 * The kernels then run natively, only chosen as on an AVX2 machine (Intel Haswell to Comet Lake,
 * AMD Zen 1-3). Built and run by tools/avx2.py; checked by tests/test_bench.py.
 *
 * Libraries read CPUID once when they load, so the cost is a fault per read, not per kernel.
 * glibc reads it before any library's constructor runs: its own string functions are limited
 * by GLIBC_TUNABLES instead (tools/avx2.py sets both). OPENEDS_CPUID_VERBOSE=1 prints the number
 * of CPUIDs answered when the process exits.
 *
 * The SIGSEGV handler must stay installed: PyTorch's DataLoader workers, Python's faulthandler
 * and others install their own, and a CPUID after that would reach theirs and kill the process.
 * So sigaction() and signal() for SIGSEGV are wrapped: the program's handler is recorded, not
 * installed, and called for every SIGSEGV that is not a CPUID (SIG_DFL / SIG_IGN: the default
 * action, so a real crash still crashes).
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

/* Leaf 7, sub-leaf 0. EBX: AVX512F DQ IFMA PF ER CD BW VL. */
static const uint32_t LEAF7_EBX = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31);
/* ECX: AVX512_VBMI VBMI2 VNNI BITALG VPOPCNTDQ. */
static const uint32_t LEAF7_ECX = BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14);
/* EDX: AVX512_4VNNIW 4FMAPS VP2INTERSECT, AMX_BF16, AVX512_FP16, AMX_TILE, AMX_INT8. */
static const uint32_t LEAF7_EDX = BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25);
/* Leaf 7, sub-leaf 1. EAX: AVX_VNNI, AVX512_BF16, AMX_FP16. */
static const uint32_t LEAF7_1_EAX = BIT(4) | BIT(5) | BIT(21);
/* Leaf 0xD, sub-leaf 0. EAX: the XSAVE state components AVX-512 (opmask, ZMM) and AMX use. */
static const uint32_t LEAFD_EAX = BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18);

static volatile long answered;
static int installed;            /* our SIGSEGV handler is in place: wrap the program's */
static struct sigaction program; /* the SIGSEGV action the program asked for (SIG_DFL at first) */

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    static sigaction_fn next;
    if (!next) next = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    return next(sig, act, old);
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (sig != SIGSEGV || !installed) return real_sigaction(sig, act, old);
    if (old) *old = program;
    if (act) program = *act;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    typedef sighandler_t (*signal_fn)(int, sighandler_t);
    static signal_fn next;
    if (sig != SIGSEGV || !installed) {
        if (!next) next = (signal_fn)dlsym(RTLD_NEXT, "signal");
        return next(sig, handler);
    }
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = SA_RESTART;
    sigemptyset(&act.sa_mask);
    if (sigaction(sig, &act, &old) != 0) return SIG_ERR;
    return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)(void (*)(void))old.sa_sigaction : old.sa_handler;
}

static long set_cpuid(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

/* Not a CPUID: what the program asked for, or the default action (which ends the process). */
static void pass_on(int sig, siginfo_t *info, void *context) {
    if (program.sa_flags & SA_SIGINFO) {
        if (program.sa_sigaction) {
            program.sa_sigaction(sig, info, context);
            return;
        }
    } else if (program.sa_handler != SIG_DFL && program.sa_handler != SIG_IGN) {
        program.sa_handler(sig);
        return;
    }
    struct sigaction fallback;
    memset(&fallback, 0, sizeof fallback);
    fallback.sa_handler = SIG_DFL;
    real_sigaction(sig, &fallback, NULL);
    raise(sig);
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    /* A faulting CPUID is a general-protection fault: SIGSEGV with SI_KERNEL at a 0F A2. */
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {
        pass_on(sig, info, context);
        return;
    }
    uint32_t leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX], a, b, c, d;
    set_cpuid(1);
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(sub));
    set_cpuid(0);
    if (leaf == 7 && sub == 0) {
        b &= ~LEAF7_EBX;
        c &= ~LEAF7_ECX;
        d &= ~LEAF7_EDX;
    } else if (leaf == 7 && sub == 1) {
        a &= ~LEAF7_1_EAX;
    } else if (leaf == 0xd && sub == 0) {
        a &= ~LEAFD_EAX;
    }
    regs[REG_RAX] = a;
    regs[REG_RBX] = b;
    regs[REG_RCX] = c;
    regs[REG_RDX] = d;
    regs[REG_RIP] += 2;
    answered++;
}

static void report(void) { fprintf(stderr, "avx2_cpuid: answered %ld CPUID instructions\n", answered); }

__attribute__((constructor)) static void hide_avx512(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    program.sa_handler = SIG_DFL;
    if (real_sigaction(SIGSEGV, &action, NULL) != 0 || set_cpuid(0) != 0) {
        fprintf(stderr, "avx2_cpuid: this CPU or kernel has no CPUID faulting (cpuid_fault): nothing hidden\n");
        _exit(3);
    }
    installed = 1;
    const char *verbose = getenv("OPENEDS_CPUID_VERBOSE");
    if (verbose && strcmp(verbose, "1") == 0) atexit(report);
}
