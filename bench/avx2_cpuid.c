/* Make this process see an AVX2 CPU: CPUID answers with AVX-512, AVX-VNNI and AMX hidden.
 *
 * Why by hand: ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA limit PyTorch only. onnxruntime's MLAS,
 * numpy and every other library choose their kernels from the CPUID instruction, and no setting
 * of theirs caps it. Emulators that do (Intel SDE, qemu -cpu Haswell) translate every instruction,
 * so their timings mean nothing. Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, x86 "cpuid_fault"
 * flag) makes each CPUID a fault instead: this library, loaded with LD_PRELOAD, turns it on at
 * start-up and answers each faulting CPUID itself with the real values minus those feature bits.
 * The kernels then run natively, only chosen as on an AVX2 machine (Intel Haswell to Comet Lake,
 * AMD Zen 1-3). Built and run by bench/avx2.py; checked by tests/test_bench_avx2.py.
 *
 * Libraries read CPUID once when they load, so the cost is a fault per read, not per kernel.
 * glibc reads it before any library's constructor runs: its own string functions are limited
 * by GLIBC_TUNABLES instead (bench/avx2.py sets both). OPENEDS_CPUID_VERBOSE=1 prints the number
 * of CPUIDs answered when the process exits.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
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

static long set_cpuid(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    /* A faulting CPUID is a general-protection fault: SIGSEGV with SI_KERNEL at a 0F A2. */
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {
        signal(sig, SIG_DFL); /* a real crash: re-raised with the default action on return */
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
    if (sigaction(SIGSEGV, &action, NULL) != 0 || set_cpuid(0) != 0) {
        fprintf(stderr, "avx2_cpuid: this CPU or kernel has no CPUID faulting (cpuid_fault): nothing hidden\n");
        _exit(3);
    }
    const char *verbose = getenv("OPENEDS_CPUID_VERBOSE");
    if (verbose && strcmp(verbose, "1") == 0) atexit(report);
}
