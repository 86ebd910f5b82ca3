/* Live probes for docs/kernel-notes/issue13.md.  Read-only on the pool: needs >= 3 free 2 MiB
 * hugepages (it never writes /proc/sys/vm/nr_hugepages).  Build and run as root:
 *   gcc -O0 -o /tmp/issue13 tools/probes/issue13.c && /tmp/issue13
 * Each line: probe name, then the observations (Free/Rsvd as deltas from the probe's start,
 * kpagecount of the probed page, errno names, /proc/self/maps lines of the range). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define H (2UL << 20)
static long base_free, base_rsvd;

static long meminfo(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r"); char line[256]; long v = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) { v = atol(line + strlen(key) + 1); break; }
    fclose(f); return v;
}
static void pool0(void) { base_free = meminfo("HugePages_Free"); base_rsvd = meminfo("HugePages_Rsvd"); }
static void pool(const char *what) {
    printf("  %-34s Free %+ld Rsvd %+ld\n", what, meminfo("HugePages_Free") - base_free,
           meminfo("HugePages_Rsvd") - base_rsvd);
}
static long kpc(void *addr) {       /* kpagecount of the page at addr, -1 if not present */
    uint64_t e, c; int fd = open("/proc/self/pagemap", O_RDONLY);
    pread(fd, &e, 8, ((uintptr_t)addr / 4096) * 8); close(fd);
    if (!(e >> 63)) return -1;
    fd = open("/proc/kpagecount", O_RDONLY);
    pread(fd, &c, 8, (e & ((1ULL << 55) - 1)) * 8); close(fd); return (long)c;
}
static uint64_t pfn(void *addr) {
    uint64_t e; int fd = open("/proc/self/pagemap", O_RDONLY);
    pread(fd, &e, 8, ((uintptr_t)addr / 4096) * 8); close(fd);
    return (e >> 63) ? (e & ((1ULL << 55) - 1)) : 0;
}
static int maps_lines(void *lo, void *hi) {
    FILE *f = fopen("/proc/self/maps", "r"); char line[512]; int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b; sscanf(line, "%lx-%lx", &a, &b);
        if (a < (unsigned long)hi && (unsigned long)lo < b) n++;
    }
    fclose(f); return n;
}
static const char *en(int r) { return r == 0 ? "ok" : strerrorname_np(errno); }
static int memfd(size_t size) {
    int fd = memfd_create("p", MFD_HUGETLB);
    if (fd < 0 || ftruncate(fd, size)) { perror("memfd"); exit(1); }
    return fd;
}
static char *map(int fd, size_t len, int flags, off_t off) {
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, off);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    return p;
}

int main(void) {
    if (meminfo("HugePages_Free") < 3) { printf("need >= 3 free hugepages\n"); return 2; }
    int fd, r, m0; char *s, *p; volatile char c; setvbuf(stdout, NULL, _IONBF, 0);

    printf("punch_hole: reserved never-faulted page 1, faulted page 0\n");
    pool0(); fd = memfd(2 * H); s = map(fd, 2 * H, MAP_SHARED, 0); pool("mmap shared 2 pages");
    s[0] = 1; pool("touch page 0");
    printf("  punch page 1 (never faulted): %s\n", en(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, H, H)));
    pool("after punch 1");
    r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, H);
    printf("  punch page 0 (mapped): %s kpc %ld\n", en(r), kpc(s));
    pool("after punch 0");
    s[0] = 1; pool("touch page 0 again");
    printf("  punch without KEEP_SIZE: %s\n", en(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, H)));
    r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096);
    printf("  punch 4 KiB inside page 0: %s kpc %ld\n", en(r), kpc(s));
    munmap(s, 2 * H); close(fd); pool("closed");

    printf("ftruncate: page 0 faulted, page 1 reserved\n");
    pool0(); fd = memfd(2 * H); s = map(fd, 2 * H, MAP_SHARED, 0); s[0] = 1; pool("mmap + touch 0");
    printf("  ftruncate(1 MiB): %s\n", en(ftruncate(fd, H / 2)));
    printf("  ftruncate(0): %s\n", en(ftruncate(fd, 0))); pool("after ftruncate 0");
    printf("  kpc page 0 %ld\n", kpc(s));
    printf("  ftruncate(2 pages): %s\n", en(ftruncate(fd, 2 * H))); pool("after grow");
    munmap(s, 2 * H); close(fd); pool("closed");

    printf("private: page cache page, then write\n");
    pool0(); fd = memfd(H); s = map(fd, H, MAP_SHARED, 0); s[0] = 7; pool("shared touch");
    p = map(fd, H, MAP_PRIVATE, 0); pool("mmap private");
    c = p[0]; printf("  private read: kpc %ld same pfn %d value %d\n", kpc(p), pfn(p) == pfn(s), c); pool("private read");
    p[0] = 9; printf("  private write: kpc priv %ld kpc shared %ld same pfn %d shared sees %d\n", kpc(p), kpc(s), pfn(p) == pfn(s), s[0]);
    pool("private write");
    munmap(p, H); pool("munmap private"); munmap(s, H); close(fd); pool("closed");

    printf("private: no page cache page; fork\n");
    pool0(); fd = memfd(H); p = map(fd, H, MAP_PRIVATE, 0); pool("mmap private");
    c = p[0]; printf("  read: kpc %ld\n", kpc(p)); pool("private read fault");
    s = map(fd, H, MAP_SHARED, 0); c = s[0]; printf("  shared read: same pfn %d\n", pfn(p) == pfn(s)); pool("shared read");
    munmap(s, H);
    p[0] = 1; pool("private write");
    pid_t ch = fork();
    if (ch == 0) { usleep(200000); printf("  child before write kpc %ld\n", kpc(p)); p[0] = 2;
                   printf("  child after write kpc %ld\n", kpc(p)); pool("child wrote"); _exit(0); }
    usleep(100000); printf("  parent after fork kpc %ld\n", kpc(p)); waitpid(ch, NULL, 0);
    printf("  parent after child exit kpc %ld\n", kpc(p)); pool("child gone");
    munmap(p, H); close(fd); pool("closed");

    printf("munmap: aligned start, unaligned end\n");
    fd = memfd(4 * H); s = map(fd, 4 * H, MAP_SHARED, 0);
    m0 = maps_lines(s, s + 4 * H); r = munmap(s + H, H + 4096);
    printf("  maps %d; munmap(s+2M, 2M+4K): %s; maps %d\n", m0, en(r), maps_lines(s, s + 4 * H));
    munmap(s, 4 * H);

    printf("MAP_FIXED with an unaligned offset over a mapping\n");
    pool0(); s = map(fd, 2 * H, MAP_SHARED, 0); s[0] = 1; pool("mapped + touched");
    p = mmap(s, 2 * H, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 4096);
    printf("  mmap fixed off 4K: %s; maps %d; kpc %ld\n", p == MAP_FAILED ? strerrorname_np(errno) : "ok",
           maps_lines(s, s + 2 * H), kpc(s)); pool("after failed MAP_FIXED");
    munmap(s, 2 * H); close(fd);

    printf("mprotect / mremap\n");
    fd = memfd(4 * H); s = map(fd, 4 * H, MAP_SHARED, 0); s[0] = 1;
    r = mprotect(s, H + 4096, PROT_READ);
    printf("  mprotect(s, H + 4096, PROT_READ): %s maps %d\n", en(r), maps_lines(s, s + 4 * H));
    r = mprotect(s + H, H, PROT_READ);
    printf("  mprotect(s + H, H, PROT_READ): %s maps %d\n", en(r), maps_lines(s, s + 4 * H));
    r = mprotect(s + H, H, PROT_READ | PROT_WRITE);
    printf("  mprotect(s + H, H, PROT_READ | PROT_WRITE): %s maps %d\n", en(r), maps_lines(s, s + 4 * H));
    p = mremap(s + 3 * H, H, 4096, 0);
    printf("  mremap shrink 2M->4K: %s same %d maps %d\n", p == MAP_FAILED ? strerrorname_np(errno) : "ok", p == s + 3 * H, maps_lines(s, s + 4 * H));
    p = mremap(s, 4 * H, 4096, 0);
    printf("  mremap shrink 8M->4K: %s same %d maps %d\n", p == MAP_FAILED ? strerrorname_np(errno) : "ok", p == s, maps_lines(s, s + 4 * H));
    p = mremap(s, 2 * H, 3 * H, 0);
    printf("  mremap grow: %s\n", p == MAP_FAILED ? strerrorname_np(errno) : "ok");
    long k0 = kpc(s);
    p = mremap(s, H, H, MREMAP_MAYMOVE | MREMAP_FIXED, (char *)s + 64 * H);
    printf("  mremap move: %s kpc before %ld after %ld old %ld\n", p == MAP_FAILED ? strerrorname_np(errno) : "ok", k0,
           p == MAP_FAILED ? -2 : kpc(p), kpc(s));
    munmap(s, 4 * H); if (p != MAP_FAILED) munmap(p, H); close(fd);

    printf("fallocate ENOSPC\n");
    long fr = meminfo("HugePages_Free") - meminfo("HugePages_Rsvd");
    pool0(); fd = memfd(0);
    r = fallocate(fd, 0, 0, (fr + 1) * H); struct stat st; fstat(fd, &st);
    printf("  fallocate(%ld pages): %s size %ld blocks*512/2M %ld\n", fr + 1, en(r), (long)st.st_size, (long)st.st_blocks * 512 / H);
    pool("after ENOSPC"); close(fd); pool("closed");
    return 0;
}
