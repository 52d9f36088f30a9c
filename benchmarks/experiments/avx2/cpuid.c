// An LD_PRELOAD library that makes this process, its threads and the programs it starts see
// a CPU without AVX-512, AMX or AVX-VNNI, whatever the CPU has: it turns on CPUID faulting
// (Linux, a CPU with the cpuid_fault flag), and answers each CPUID instruction itself from
// the real one with those feature bits cleared. Every library that picks its code by CPUID
// (oneDNN, YNNPACK in XLA, MKL, OpenBLAS, gcc's -march=native) then takes its AVX2 code.
// benchmarks/experiments/avx2/run builds and loads it.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))
// Leaf 7, subleaf 0: AVX-512 F, DQ, IFMA, PF, ER, CD, BW, VL; VBMI, VBMI2, VNNI, BITALG,
// VPOPCNTDQ; 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, FP16, AMX-TILE, AMX-INT8.
static const unsigned kLeaf7Ebx = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31);
static const unsigned kLeaf7Ecx = BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14);
static const unsigned kLeaf7Edx = BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25);
// Leaf 7, subleaf 1: AVX-VNNI, AVX512-BF16 (EAX); AVX10 (EDX). Leaf 0xD: the opmask, ZMM
// and AMX tile state components.
static const unsigned kLeaf7Sub1Eax = BIT(4) | BIT(5);
static const unsigned kLeaf7Sub1Edx = BIT(19);
static const unsigned kLeafDEax = BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18);

static void on_segv(int sig, siginfo_t* info, void* context) {
  greg_t* reg = ((ucontext_t*)context)->uc_mcontext.gregs;
  const unsigned char* ip = (const unsigned char*)reg[REG_RIP];
  // A faulting CPUID is a general protection fault (SI_KERNEL) at a readable 0F A2.
  if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {  // else die of it
    signal(sig, SIG_DFL);
    return;
  }
  unsigned leaf = (unsigned)reg[REG_RAX], sub = (unsigned)reg[REG_RCX], a, b, c, d;
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
  __cpuid_count(leaf, sub, a, b, c, d);
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
  if (leaf == 7 && sub == 0) b &= ~kLeaf7Ebx, c &= ~kLeaf7Ecx, d &= ~kLeaf7Edx;
  if (leaf == 7 && sub == 1) a &= ~kLeaf7Sub1Eax, d &= ~kLeaf7Sub1Edx;
  if (leaf == 0xd && sub == 0) a &= ~kLeafDEax;
  reg[REG_RAX] = a, reg[REG_RBX] = b, reg[REG_RCX] = c, reg[REG_RDX] = d;
  reg[REG_RIP] += 2;
}

__attribute__((constructor)) static void start_faulting(void) {
  struct sigaction action = {0};
  action.sa_sigaction = on_segv;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  if (sigaction(SIGSEGV, &action, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
    fprintf(stderr, "benchmarks/experiments/avx2/cpuid.c: this CPU or kernel cannot fault on CPUID\n");
    exit(1);
  }
}
