// Peak single-precision FMA throughput, for benchmarks/speed.py: every thread runs 12
// independent FMA chains on registers (no memory traffic), enough to keep both FMA pipes
// of a core busy whatever their latency. Build: cc -O2 -mavx512f -mfma -fopenmp -DW=512
// (or -mavx2 -DW=256); run: ./fma ITERATIONS THREADS; prints one JSON line.
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
#ifndef W
#define W 512
#endif
#if W == 512
#define SET(x) _mm512_set1_ps((float)(x))
#else
#define SET(x) _mm256_set1_ps((float)(x))
#endif
int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 200000000L;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    double t0 = omp_get_wtime();
    float sink = 0;
    #pragma omp parallel num_threads(threads) reduction(+:sink)
    {
#if W == 512
        __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
        __m512 c0=SET(1),c1=SET(2),c2=SET(3),c3=SET(4),c4=SET(5),c5=SET(6),c6=SET(7),c7=SET(8),c8=SET(9),c9=SET(10),c10=SET(11),c11=SET(12);
        for (long i = 0; i < iters; i++) {
#define F(c) c = _mm512_fmadd_ps(c, a, b);
            F(c0)F(c1)F(c2)F(c3)F(c4)F(c5)F(c6)F(c7)F(c8)F(c9)F(c10)F(c11)
        }
        __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0,c1),_mm512_add_ps(c2,c3)),_mm512_add_ps(_mm512_add_ps(c4,c5),_mm512_add_ps(c6,c7)));
        s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8,c9),_mm512_add_ps(c10,c11)));
        sink += _mm512_reduce_add_ps(s);
#define LANES 16
#else
        __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
        __m256 c0=SET(1),c1=SET(2),c2=SET(3),c3=SET(4),c4=SET(5),c5=SET(6),c6=SET(7),c7=SET(8),c8=SET(9),c9=SET(10),c10=SET(11),c11=SET(12);
        for (long i = 0; i < iters; i++) {
#define G(c) c = _mm256_fmadd_ps(c, a, b);
            G(c0)G(c1)G(c2)G(c3)G(c4)G(c5)G(c6)G(c7)G(c8)G(c9)G(c10)G(c11)
        }
        float o[8]; __m256 s = _mm256_add_ps(_mm256_add_ps(c0,c1),_mm256_add_ps(c2,c3));
        s = _mm256_add_ps(s,_mm256_add_ps(_mm256_add_ps(c4,c5),_mm256_add_ps(c6,c7)));
        s = _mm256_add_ps(s,_mm256_add_ps(_mm256_add_ps(c8,c9),_mm256_add_ps(c10,c11)));
        _mm256_storeu_ps(o, s); for (int j=0;j<8;j++) sink += o[j];
#define LANES 8
#endif
    }
    double dt = omp_get_wtime() - t0;
    double flops = 2.0 * LANES * 12 * (double)iters * threads;
    printf("{\"width\": %d, \"threads\": %d, \"gflops\": %.2f, \"seconds\": %.3f, \"sink\": %g}\n", W, threads, flops / dt / 1e9, dt, sink);
    return 0;
}
