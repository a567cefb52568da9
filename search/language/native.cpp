// The native kernel: a candidate's operator program run for each element, forward and backward (see native.py).
// Built once per machine by torch.utils.cpp_extension.load_inline; native.py fills in the operator cases from the
// operator table (search/language/ops.py NATIVE) where the markers stand, so no operator is listed here.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <utility>
#include <vector>

// Vector math (vm::exp, ...; the operator table's code calls these). The tile loops vectorise their transcendental
// functions by calling glibc's vector math (libmvec: eight floats a call with AVX2, sixteen with AVX-512), declared
// SIMD-callable. Where one lane of a vector is outside a libmvec function's fast range (NaN, inf, exp beyond 87, sin of
// 5e4, ...) it computes all lanes one by one, 5 to 15 times slower, and a child whose values run away would pay that
// in every call. So on x86-64 a float function goes through a guard of our own (``guarded``, in the vector ABI under
// the name GCC calls): lanes in the fast range go to libmvec; NaN stays NaN; where the float function is flat (exp
// beyond 89 is inf, tanh of inf is 1) a lane gets that constant; any other lane glibc's scalar function (libmvec's own
// slow path computes it much the same way: the same values to an ulp). Which functions are guarded, and their ranges:
// below; double calls libmvec directly.
#define ACTSEARCH_SIMD(name) __attribute__((__simd__("notinbranch"))) double name(double) noexcept;
extern "C" {
ACTSEARCH_SIMD(exp) ACTSEARCH_SIMD(log) ACTSEARCH_SIMD(log1p) ACTSEARCH_SIMD(sin) ACTSEARCH_SIMD(cos)
ACTSEARCH_SIMD(sinh) ACTSEARCH_SIMD(cosh) ACTSEARCH_SIMD(tanh) ACTSEARCH_SIMD(asinh) ACTSEARCH_SIMD(atan)
ACTSEARCH_SIMD(erf)
}
#undef ACTSEARCH_SIMD

// A function libmvec computes as it is, float and double.
#define ACTSEARCH_DIRECT(name)                                                                                  \
  extern "C" __attribute__((__simd__("notinbranch"))) float name##f(float) noexcept;                            \
  namespace vm {                                                                                                 \
  inline float name(float a) { return ::name##f(a); }                                                           \
  inline double name(double a) { return ::name(a); }                                                            \
  }

#if defined(__x86_64__) && defined(__SSE2__)
#include <immintrin.h>

namespace vm {
typedef float f4 __attribute__((vector_size(16)));
typedef int i4 __attribute__((vector_size(16)));
typedef float f8 __attribute__((vector_size(32)));
typedef int i8 __attribute__((vector_size(32)));
typedef float f16 __attribute__((vector_size(64)));
typedef int i16 __attribute__((vector_size(64)));

// libmvec is fast for lo <= a <= hi (and |a| >= tiny); at or below sat_lo the function's float value is c_lo, at or
// above sat_hi c_hi; where |a| < tiny it is a itself. Sixteen lanes (AVX-512): see the table (whole: HALVES, but the
// sixteen-lane function where every |a| < whole).
enum Sixteen { HALVES, GUARDED, OPEN };
struct Rule {
  float lo, hi, sat_lo, c_lo, sat_hi, c_hi;
  Sixteen sixteen;
  float tiny, whole;
};

inline int mask(i4 m) { return _mm_movemask_ps(reinterpret_cast<__m128>(m)); }
#ifdef __AVX2__
inline int mask(i8 m) { return _mm256_movemask_ps(reinterpret_cast<__m256>(m)); }
#endif
#ifdef __AVX512F__
inline int mask(i16 m) { return _mm512_cmplt_epi32_mask(reinterpret_cast<__m512i>(m), _mm512_setzero_si512()); }
#endif

// Lanes for glibc's scalar function (bit l of ``left``), called through a pointer so that the compiler cannot turn
// the loop back into one call of the vector function on every lane.
__attribute__((noinline)) inline void scalar_lanes(const float* a, float* y, int lanes, int left,
                                                   float (*scalar)(float)) {
  for (int l = 0; l < lanes; ++l)
    if (left >> l & 1) y[l] = scalar(a[l]);
}

// The lanes of a vector of F (bit l of ``left``) given glibc's scalar function.
template <typename F>
inline void scalar_left(const F& a, F& y, int left, float (*scalar)(float)) {
  if (left) scalar_lanes(reinterpret_cast<const float*>(&a), reinterpret_cast<float*>(&y), sizeof(F) / sizeof(float),
                         left, scalar);
}

// Whether every lane of a mask is set.
template <typename I>
inline bool all(I m) {
  return mask(m) == (1 << (sizeof(I) / sizeof(int))) - 1;
}

// A vector with lanes outside the fast range (``in`` clear): libmvec computes the others (those replaced by 1).
template <typename F, typename I>
__attribute__((noinline)) F guarded_slow(F a, I in, F (*vector)(F) noexcept, float (*scalar)(float) noexcept,
                                         const Rule& r) {
  const I low = a <= r.sat_lo, high = a >= r.sat_hi, nan = a != a, tiny = (a < r.tiny) & (a > -r.tiny);
  F y = vector(in ? a : F{} + 1.0f);
  y = in ? y : (nan | tiny) ? a : low ? F{} + r.c_lo : F{} + r.c_hi;
  scalar_left(a, y, mask(~(in | low | high | nan | tiny)), scalar);
  return y;
}

// The fast path stays a range check and a jump to libmvec (the rest is out of line): about 0.6 ns per vector.
template <typename F, typename I>
inline F guarded(F a, F (*vector)(F) noexcept, float (*scalar)(float) noexcept, const Rule& r) {
  I in = (a >= r.lo) & (a <= r.hi);
  if (r.tiny > 0) in &= (a >= r.tiny) | (a <= -r.tiny);  // a constant rule: no test where tiny is 0
  if (__builtin_expect(all(in), 1)) return vector(a);
  return guarded_slow<F, I>(a, in, vector, scalar, r);
}

// sin and cos. libmvec's are fast for |a| <= 1e4 and compute a whole vector lane by lane (6 to 8 ns a value, as glibc's
// scalar sinf) from 2e4 on, where a child's grown pre-activations go (`sin(x) + log_abs(x)` on mnist1d: 2.1x relu,
// eager 1.5x). So lanes of 1e4 < |a| < 8e8 are reduced here, in double: k = rint(a * 2 / pi), r = a - k * pi / 2 with
// pi / 2 in three parts (Cody and Waite; k * C1 and k * C2 exact for |k| < 2^29), and take libmvec's sin or cos of
// (float) r by the quadrant k + shift (shift 1: cos(a) = sin(a + pi / 2)); within an ulp of glibc's sinf and cosf.
// Other lanes as libmvec has them; NaN stays NaN, inf gives NaN, |a| >= 8e8 glibc's scalar function.
typedef double d4 __attribute__((vector_size(32)));
typedef double d8 __attribute__((vector_size(64)));
typedef double d16 __attribute__((vector_size(128)));
template <typename F> struct Doubles;
template <> struct Doubles<f4> { typedef d4 type; };
template <> struct Doubles<f8> { typedef d8 type; };
template <> struct Doubles<f16> { typedef d16 type; };
constexpr float TRIG_FAST = 1e4f, TRIG_FAR = 8e8f;

template <typename F, typename I>
__attribute__((noinline)) F trig_slow(F a, int shift, F (*vsin)(F) noexcept, F (*vcos)(F) noexcept,
                                      float (*scalar)(float) noexcept) {
  typedef typename Doubles<F>::type D;
  const I in = (a >= -TRIG_FAST) & (a <= TRIG_FAST), nan = a != a;
  const I far = ~in & (a > -TRIG_FAR) & (a < TRIG_FAR), inf = (a == __builtin_inff()) | (a == -__builtin_inff());
  F y = (shift ? vcos : vsin)(in ? a : F{});
  const D d = __builtin_convertvector(far ? a : F{}, D);
  const D magic = D{} + 0x1.8p52;  // adding and taking it away rounds to an integer (|a * 2 / pi| < 2^51)
  const D k = (d * 0.6366197723675814 + magic) - magic;
  const D r = ((d - k * 0x1.921fb4p+0) - k * 0x1.4442dp-24) - k * 0x1.8469898cc517p-48;
  const F rf = __builtin_convertvector(r, F);
  const I q = __builtin_convertvector(k, I) + shift;
  const F s = vsin(rf), c = vcos(rf);
  F z = (q & 1) ? c : s;
  z = (q & 2) ? -z : z;
  y = in ? y : far ? z : nan ? a : F{} + __builtin_nanf("");
  scalar_left(a, y, mask(~(in | far | nan | inf)), scalar);
  return y;
}

template <typename F, typename I>
inline F trig(F a, int shift, F (*vsin)(F) noexcept, F (*vcos)(F) noexcept, float (*scalar)(float) noexcept) {
  const I in = (a >= -TRIG_FAST) & (a <= TRIG_FAST);
  if (__builtin_expect(all(in), 1)) return (shift ? vcos : vsin)(a);
  return trig_slow<F, I>(a, shift, vsin, vcos, scalar);
}
}  // namespace vm

// A guarded function: vm::name(float) calls actsearch_namef, declared SIMD-callable and const, so GCC's vectorised
// loops call its variants by the vector ABI's names (4 lanes SSE, 8 AVX2, 16 AVX-512). Those and the scalar one are
// defined under other names and given these by assembler aliases: given the declared function's body, GCC would make
// SIMD clones of its own under the same names. (Declared without const, a call "clobbers memory" for GCC, and 116 of
// the kernel's loops, some with no call at all, were left scalar.)
#define ACTSEARCH_ALIAS(alias, target) \
  __asm__(".globl " alias "\n.hidden " alias "\n.set " alias ", " target "\n");
// vm::name (float: ours, in the vector ABI; double: libmvec's) and our scalar function; the vectors: below.
#define ACTSEARCH_VECTOR_ABI(name)                                                                              \
  extern "C" __attribute__((__simd__("notinbranch"), const)) float actsearch_##name##f(float) noexcept;         \
  namespace vm {                                                                                                 \
  inline float name(float a) { return actsearch_##name##f(a); }                                                 \
  inline double name(double a) { return ::name(a); }                                                            \
  }                                                                                                              \
  extern "C" __attribute__((used, visibility("hidden"))) float actsearch_##name##_1(float a) noexcept {         \
    return ::name##f(a);                                                                                         \
  }                                                                                                              \
  ACTSEARCH_ALIAS("actsearch_" #name "f", "actsearch_" #name "_1")
#define ACTSEARCH_GUARDED(name, ...)                                                                            \
  namespace vm {                                                                                                 \
  constexpr Rule name##_rule{__VA_ARGS__};                                                                       \
  }                                                                                                              \
  ACTSEARCH_VECTOR_ABI(name)                                                                                     \
  extern "C" vm::f4 _ZGVbN4v_##name##f(vm::f4) noexcept;                                                       \
  extern "C" __attribute__((used, visibility("hidden"))) vm::f4 actsearch_##name##_4(vm::f4 a) noexcept {       \
    return vm::guarded<vm::f4, vm::i4>(a, _ZGVbN4v_##name##f, ::name##f, vm::name##_rule);                      \
  }                                                                                                              \
  ACTSEARCH_ALIAS("_ZGVbN4v_actsearch_" #name "f", "actsearch_" #name "_4")                                     \
  ACTSEARCH_GUARDED8(name)

#ifdef __AVX2__
#define ACTSEARCH_GUARDED8(name)                                                                                \
  extern "C" vm::f8 _ZGVdN8v_##name##f(vm::f8) noexcept;                                                       \
  extern "C" __attribute__((used, visibility("hidden"))) vm::f8 actsearch_##name##_8(vm::f8 a) noexcept {       \
    return vm::guarded<vm::f8, vm::i8>(a, _ZGVdN8v_##name##f, ::name##f, vm::name##_rule);                      \
  }                                                                                                              \
  ACTSEARCH_ALIAS("_ZGVdN8v_actsearch_" #name "f", "actsearch_" #name "_8")                                     \
  ACTSEARCH_GUARDED16(name)
#else
#define ACTSEARCH_GUARDED8(name)
#endif

#ifdef __AVX512F__
namespace vm {
// Sixteen lanes as two calls of libmvec's eight-lane function (the table's column "16": HALVES).
template <f8 (*eight)(f8) noexcept>
f16 halves(f16 a) noexcept {
  const f8 lo = eight(__builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7));
  const f8 hi = eight(__builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15));
  return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
}  // namespace vm
#define ACTSEARCH_GUARDED16(name)                                                                               \
  extern "C" vm::f16 _ZGVeN16v_##name##f(vm::f16) noexcept;                                                    \
  extern "C" __attribute__((used, visibility("hidden"))) vm::f16 actsearch_##name##_16(vm::f16 a) noexcept {    \
    if (vm::name##_rule.sixteen == vm::OPEN) return _ZGVeN16v_##name##f(a);                                      \
    if (vm::name##_rule.whole > 0 && vm::all<vm::i16>((a > -vm::name##_rule.whole) & (a < vm::name##_rule.whole))) \
      return _ZGVeN16v_##name##f(a);                                                                             \
    return vm::guarded<vm::f16, vm::i16>(a, vm::name##_rule.sixteen == vm::GUARDED                               \
                                                ? _ZGVeN16v_##name##f                                            \
                                                : vm::halves<_ZGVdN8v_##name##f>,                                \
                                         ::name##f, vm::name##_rule);                                            \
  }                                                                                                              \
  ACTSEARCH_ALIAS("_ZGVeN16v_actsearch_" #name "f", "actsearch_" #name "_16")
#else
#define ACTSEARCH_GUARDED16(name)
#endif

// sin and cos (vm::trig above), in the vector ABI as the guarded functions are. One width's variant: n lanes of F
// (I: its mask), under the vector ABI's ISA letter, calling libmvec's sinf and cosf of that width.
#define ACTSEARCH_TRIG_LANES(name, shift, isa, n, F, I)                                                         \
  extern "C" vm::F _ZGV##isa##N##n##v_sinf(vm::F) noexcept;                                                    \
  extern "C" vm::F _ZGV##isa##N##n##v_cosf(vm::F) noexcept;                                                    \
  extern "C" __attribute__((used, visibility("hidden"))) vm::F actsearch_##name##_##n(vm::F a) noexcept {       \
    return vm::trig<vm::F, vm::I>(a, shift, _ZGV##isa##N##n##v_sinf, _ZGV##isa##N##n##v_cosf, ::name##f);       \
  }                                                                                                              \
  ACTSEARCH_ALIAS("_ZGV" #isa "N" #n "v_actsearch_" #name "f", "actsearch_" #name "_" #n)
#define ACTSEARCH_TRIG(name, shift)                                                                             \
  ACTSEARCH_VECTOR_ABI(name)                                                                                     \
  ACTSEARCH_TRIG_LANES(name, shift, b, 4, f4, i4)                                                                \
  ACTSEARCH_TRIG8(name, shift)                                                                                   \
  ACTSEARCH_TRIG16(name, shift)

#ifdef __AVX2__
#define ACTSEARCH_TRIG8(name, shift) ACTSEARCH_TRIG_LANES(name, shift, d, 8, f8, i8)
#else
#define ACTSEARCH_TRIG8(name, shift)
#endif

#ifdef __AVX512F__
#define ACTSEARCH_TRIG16(name, shift) ACTSEARCH_TRIG_LANES(name, shift, e, 16, f16, i16)
#else
#define ACTSEARCH_TRIG16(name, shift)
#endif

namespace vm {
constexpr float INF = __builtin_inff(), NaN = __builtin_nanf(""), MAX = 3.40282347e38f, HALF_PI = 1.57079637f;
}
// Fast ranges measured (a libmvec call on eight or on sixteen equal values: the same ranges; 2026-12-05, glibc 2.36);
// the constants are glibc's scalar values there (expf(89) = inf, expf(-105) = 0, sinhf(90) = inf, tanhf(inf) = 1,
// atanf(1e8) = HALF_PI).
// Guarded are the functions whose slow inputs a child that goes on training can send: exp's large negative arguments
// (gauss(x) of |x| > 10, softplus), the tiny values log1p gets from softplus's exp (libmvec's log1p takes 25 ns a value
// on a denormal; below 1e-30 log1p's value is a itself: glibc's log1pf(a) == a for |a| < 2^-30, 2e6 values checked), an
// inf that tanh or asinh turns finite, atan of 1e7 and more (pre-activations of a child whose weights grow). sin and
// cos have their own guard (vm::trig). log of a NaN or an inf makes the child's loss non-finite, and the child stops;
// libmvec's erf is fast on every input: those two go to libmvec as they are. Column 16, with AVX-512: GUARDED, the
// guard around libmvec's sixteen-lane function (its fast ranges are the eight-lane one's); OPEN, that function alone
// (atan's is fast on every input, 1e7 and inf too); HALVES, two calls of the eight-lane function, where the
// sixteen-lane one changes what a function is: cosh's is not rounded as sinh's (sinh(x) - cosh(x) at x = 20 was -16
// where eager's is 0); the sixteen-lane tanh never reaches 1 (0.99999994 from 8.3 on) where glibc's tanhf is 1 from
// 9.0109139 and eager's from 9.0108404, so 1 - tanh^2 is not 0 where eager's is: 13 of the 995 two-unit test functions
// off eager, against 8 (9 with a guard giving 1 from 9.0109139). Where every |a| < 8 (column "whole") tanh and cosh
// call the sixteen-lane function all the same: there tanh's is within 1 ulp of the eight-lane one (2^22 values; 1.37
// and 1.03 ulp from tanh in double at most), cosh's within 2 (2.02 and 1.99 ulp), and a call takes 0.56 to 0.76x
// (tanh), 0.67x (cosh) the time of two; test_native's functions off eager are the same 7 of 995. The others differ
// from the eight-lane functions by 1 to 4 ulp (asinh, atan, erf; exp, log1p, sinh, sin, cos and log not at all, 2^22
// random values each).
//                name    fast range     at or below: value   at or above: value   16       below |tiny|: a  whole
ACTSEARCH_GUARDED(exp,   -87, 80,        -105, 0,             89, INF,          GUARDED, 0)
ACTSEARCH_GUARDED(log1p, -0.5f, 1.7e38f, -INF, NaN,           INF, INF,         GUARDED, 1e-30f)
ACTSEARCH_GUARDED(sinh,  -80, 80,        -90, -INF,           90, INF,          GUARDED, 0)
ACTSEARCH_GUARDED(cosh,  -80, 80,        -90, INF,            90, INF,          HALVES,  0,             8)
ACTSEARCH_GUARDED(tanh,  -MAX, MAX,      -INF, -1,            INF, 1,           HALVES,  0,             8)
ACTSEARCH_GUARDED(asinh, -MAX, MAX,      -INF, -INF,          INF, INF,         GUARDED, 0)
ACTSEARCH_GUARDED(atan,  -1e6f, 1e6f,    -1e8f, -HALF_PI,     1e8f, HALF_PI,    OPEN,    0)
ACTSEARCH_TRIG(sin, 0) ACTSEARCH_TRIG(cos, 1)
ACTSEARCH_DIRECT(log) ACTSEARCH_DIRECT(erf)
#else  // elsewhere libmvec as it is
ACTSEARCH_DIRECT(exp) ACTSEARCH_DIRECT(log) ACTSEARCH_DIRECT(log1p) ACTSEARCH_DIRECT(sin) ACTSEARCH_DIRECT(cos)
ACTSEARCH_DIRECT(sinh) ACTSEARCH_DIRECT(cosh) ACTSEARCH_DIRECT(tanh) ACTSEARCH_DIRECT(asinh) ACTSEARCH_DIRECT(atan)
ACTSEARCH_DIRECT(erf)
#endif

namespace {

constexpr double PI = 3.14159265358979323846;
// Elements per tile: every node's values and gradients of a tile stay in cache (2 KiB a row), and each node's loop runs
// long enough to pay for its setup: the kernel alone on the proxy's four activation shapes (the sample's 45 one-unit
// and 36 two-unit functions, 2026-12-05, AMD EPYC Zen 4) took, over 256's time, 1.07x at 128, 0.96x at 384 and 512,
// 0.96 to 0.99x at 768 and 1024; whole training steps at 512 over 256, 0.997x (benchmarks/kernel_ab.py, 40 functions;
// docs/benchmarks.md).
constexpr int64_t TILE = 512;

template <typename T> inline T sgn(T a) { return a > T(0) ? T(1) : (a < T(0) ? T(-1) : T(0)); }
template <typename T> inline T sigm(T a) { return T(1) / (T(1) + vm::exp(-a)); }
template <typename T> inline T clamp_min(T a, T m) { return std::isnan(a) ? a : (a < m ? m : a); }
// Both sides of a choice computed before choosing: GCC 12 leaves a loop scalar where a call of ours is made under a
// condition (it if-converts only calls of its own builtins), so a call must come first (and -fno-tree-sink keeps it
// there: native.cflags).
template <typename T> inline T pick(bool c, T x, T y) { return c ? x : y; }
template <typename T> inline T sinc_pi(T t) {
  const T q = T(PI) * t;
  return pick(t == T(0), T(1), vm::sin(q) / q);
}

inline bool mentions(int32_t opcode, char what);

// How gradients flow down a program in the backward: which rows' formulas run (live: the root, and the operands whose
// gradients a row that runs writes; not those under ``beta``, whose value ignores its operand), into which gradient
// rows (merged: an operand's value row, Program::of; apart: the operand's own row), and whether a row's gradient for
// its operand adds to what a row after it wrote there (add[2k + side], side 0: a, 1: b; the first writer stores). x is
// a row of its own here (dx); writes_x: some row's backward writes dx.
struct Flow {
  bool merged;
  std::vector<char> live, add;
  bool writes_x;
};

// One instruction per node, in evaluation order: opcode, operand slots (-1: the input x), beta row (-1: none).
// value[k]: the row whose value row k has. A row that computes what an earlier row computes (the same operator of the
// same values, no beta: a two-unit function often uses the first unit's value twice, as in tanh(u) * softplus(u)) has
// that row's value, and the forward computes it once. The backward runs it once too (``merged``), as autograd does on
// a graph where a value has two uses: its gradient row adds up both parents' gradients, then its formula runs once;
// half the backward of `min(softplus(u), tanh(u))`. Eager runs each use's backward (``apart``) and adds their
// gradients at x: the same sums in another order, but where one use's gradient is not finite, eager's is NaN or inf
// as each use's products make it (inf - inf, 0 * inf). So a tile whose dx is not finite is run again apart
// (backward_saved), and a child that diverges gets eager's non-finite values.
struct Program {
  const int32_t* code;
  int64_t nodes;
  std::vector<int64_t> value;
  bool shares;         // some row has an earlier row's value: the two flows may differ
  Flow merged, apart;  // apart: built only where ``shares`` (it is run only then: backward_saved)
  const int32_t* at(int64_t k) const { return code + 4 * k; }
  int64_t of(int32_t slot) const { return slot < 0 ? -1 : value[slot]; }  // an operand's value row (-1: x)
  int64_t grad_row(const Flow& f, int32_t slot) const { return f.merged ? of(slot) : slot; }
};

// Parents come after their operands: from the root down, a row's parents are all seen before it.
inline Flow flow_of(const Program& prog, bool merged) {
  const int64_t nodes = prog.nodes;
  Flow f{merged, std::vector<char>(nodes, 0), std::vector<char>(2 * nodes, 0), false};
  std::vector<char> written(nodes + 1, 0);  // per gradient row, and x's (the last)
  if (nodes > 0) f.live[nodes - 1] = 1;
  for (int64_t k = nodes - 1; k >= 0; --k) {
    if (!f.live[k]) continue;
    const int32_t* ins = prog.at(k);
    for (int side = 0; side < 2; ++side) {
      if (!mentions(ins[0], side == 0 ? 'A' : 'B')) continue;  // writes no gradient for this operand
      const int64_t row = ins[1 + side] < 0 ? nodes : prog.grad_row(f, ins[1 + side]);
      f.add[2 * k + side] = written[row];
      written[row] = 1;
      if (row < nodes) f.live[row] = 1;
    }
  }
  f.writes_x = written[nodes];
  return f;
}

inline Program program_of(const torch::Tensor& code) {
  const int64_t nodes = code.size(0);
  Program prog{code.data_ptr<int32_t>(), nodes, std::vector<int64_t>(nodes), false, {}, {}};
  for (int64_t k = 0; k < nodes; ++k) {
    const int32_t* ins = prog.at(k);
    prog.value[k] = k;
    for (int64_t j = 0; j < k && ins[3] < 0; ++j) {
      const int32_t* other = prog.at(j);
      if (other[0] == ins[0] && other[3] < 0 && prog.of(other[1]) == prog.of(ins[1]) &&
          prog.of(other[2]) == prog.of(ins[2])) {
        prog.value[k] = prog.value[j];
        prog.shares = true;
        break;
      }
    }
  }
  prog.merged = flow_of(prog, true);
  if (prog.shares) prog.apart = flow_of(prog, false);
  return prog;
}

// The betas as seen by the elements: element e of x is in channel (e / inner) % channels, so its betas repeat with a
// period of channels * inner elements (1 with one beta for all channels). Pattern row j holds beta[j, channel] for
// period + TILE positions, so the tile starting at element e reads its betas at row j + e % period, without copying
// them per tile (built once per call: betas * (channels * inner + TILE) values).
struct Betas {
  int64_t period, width;  // width = period + TILE: a pattern row's length
};

inline Betas betas_of(int64_t used, int64_t beta_cols, int64_t channels, int64_t inner) {
  int64_t period = used == 0 || beta_cols == 1 ? 1 : channels * inner;
  return {period, period + TILE};
}

template <typename T>
std::vector<T> beta_pattern(const T* beta, int64_t used, int64_t beta_cols, int64_t inner, const Betas& b) {
  std::vector<T> out(std::max<int64_t>(1, used) * b.width);
  for (int64_t j = 0; j < used; ++j) {
    T* row = out.data() + j * b.width;
    if (beta_cols == 1) {
      std::fill(row, row + b.width, beta[j]);
      continue;
    }
    for (int64_t c = 0; c < beta_cols; ++c)  // the period: each channel's inner positions
      std::fill(row + c * inner, row + (c + 1) * inner, beta[j * beta_cols + c]);
    for (int64_t k = b.period; k < b.width; k += b.period)  // and its first TILE positions again, after it
      std::copy(row, row + std::min(b.period, b.width - k), row + k);
  }
  return out;
}

// What an operator's backward formula mentions (ops.NATIVE; native._mentions): the values it reads, its operands' a
// and b and its own v, and q where its beta has a second gradient row (gq).
inline bool mentions(int32_t opcode, char what) {
  switch (opcode) {
/*MENTIONS*/
    default:  // an unknown opcode: the tile loops refuse it
      return true;
  }
}

// Whether an operator's forward calls a vector math function (exp, sin, tanh, ...; native._costly): the backward then
// loads its value, saved by the forward, rather than computing it again.
inline bool costly(int32_t opcode) {
  switch (opcode) {
/*COSTLY*/
    default:
      return false;
  }
}

// Which node values the backward has, and how: it needs a value where a backward formula that runs (Program::live)
// reads it (its own formula's v, its parent's a or b) or where a node it computes again is computed from it. A needed
// value of a costly operator is saved by the forward (when ``saving``) and loaded; the others needed are computed again
// (``compute``), and the rest not at all; a row that has an earlier row's value (Program::value) is never computed.
// Children and the rows whose value a row has come before it in the program, so one pass from the root decides.
struct Plan {
  std::vector<char> compute;   // per node: computed again in the backward
  std::vector<int64_t> saved;  // the nodes saved by the forward, in program order (row j of the saved tensor)
  bool root;                   // the root's value is read back: it is y, which autograd keeps as the output it is
};

inline Plan plan_of(const Program& prog, bool saving) {
  std::vector<char> need(prog.nodes, 0), keep(prog.nodes, 0);
  Plan plan{std::vector<char>(prog.nodes, 0), {}, false};
  for (int64_t k = prog.nodes - 1; k >= 0; --k) {
    const int32_t* ins = prog.at(k);
    if (prog.value[k] != k) continue;  // an earlier row's value: computed there, never a parent that runs
    const bool live = prog.merged.live[k];  // the apart flow's rows that run read the same values
    need[k] = need[k] || (live && mentions(ins[0], 'v'));
    keep[k] = saving && need[k] && costly(ins[0]);
    plan.compute[k] = need[k] && !keep[k];
    const bool again = plan.compute[k];  // computed again, so its operands' values are needed
    if (ins[1] >= 0) need[prog.of(ins[1])] = need[prog.of(ins[1])] || again || (live && mentions(ins[0], 'a'));
    if (ins[2] >= 0) need[prog.of(ins[2])] = need[prog.of(ins[2])] || again || (live && mentions(ins[0], 'b'));
  }
  const int64_t root = prog.nodes - 1;
  for (int64_t k = 0; k < root; ++k)
    if (keep[k]) plan.saved.push_back(k);
  plan.root = root >= 0 && keep[root];
  return plan;
}

// at[k]: where node k's values for this tile are (a row of the tile's scratch, of the saved values, or y).
template <typename T>
void forward_tile(const Program& prog, int64_t n, const T* x, const T* P, int64_t W, T* const* at,
                  const char* compute = nullptr) {
  const T E = T(/*EPS*/);
  for (int64_t k = 0; k < prog.nodes; ++k) {
    if (prog.value[k] != k) continue;  // an earlier row's value
    if (compute != nullptr && !compute[k]) continue;  // the backward never reads it, or loads it saved (plan_of)
    const int32_t* ins = prog.at(k);
    const T* A = ins[1] < 0 ? x : at[prog.of(ins[1])];
    const T* B = ins[2] < 0 ? x : at[prog.of(ins[2])];
    const T* Pk = ins[3] < 0 ? P : P + ins[3] * W;
    T* out = at[k];
    (void)A; (void)B; (void)Pk; (void)E;
    switch (ins[0]) {
/*FORWARD*/
      default: TORCH_CHECK(false, "native kernel: unknown opcode ", ins[0]);
    }
  }
}

template <typename T>
void backward_tile(const Program& prog, const Flow& flow, int64_t n, const T* x, const T* P, int64_t W,
                   const T* const* at, T* G, const T* dy, T* dx, T* GP) {
  const T E = T(/*EPS*/);
  for (int64_t k = prog.nodes - 1; k >= 0; --k) {
    if (!flow.live[k]) continue;
    const int32_t* ins = prog.at(k);
    const T* A = ins[1] < 0 ? x : at[prog.of(ins[1])];  // values: the rows that have them
    const T* B = ins[2] < 0 ? x : at[prog.of(ins[2])];
    const T* Pk = ins[3] < 0 ? P : P + ins[3] * W;
    T* GA = ins[1] < 0 ? dx : G + prog.grad_row(flow, ins[1]) * TILE;
    T* GB = ins[2] < 0 ? dx : G + prog.grad_row(flow, ins[2]) * TILE;
    T* GPk = ins[3] < 0 ? GP : GP + ins[3] * 2 * TILE;  // two rows per beta: its two sums (see ops.NATIVE)
    const T* out = at[prog.value[k]];
    const T* Gk = k == prog.nodes - 1 ? dy : G + k * TILE;
    const bool addA = flow.add[2 * k], addB = flow.add[2 * k + 1];
    (void)A; (void)B; (void)Pk; (void)E; (void)GA; (void)GB; (void)GPk; (void)out; (void)addA; (void)addB;
    switch (ins[0]) {
/*BACKWARD*/
      default: TORCH_CHECK(false, "native kernel: unknown opcode ", ins[0]);
    }
  }
  if (!flow.writes_x) std::fill(dx, dx + n, T(0));  // a function whose gradient does not reach x
}

// Whether every value of a is finite (0 * inf and 0 * NaN are NaN).
template <typename T>
inline bool finite(const T* a, int64_t n) {
  T sum = 0;
  _Pragma("omp simd reduction(+:sum)")
  for (int64_t i = 0; i < n; ++i) sum += a[i] * T(0);
  return sum == T(0);
}

struct Shape {
  int64_t numel, channels, inner, n_betas, beta_cols, tiles, grain, used;  // used: the beta rows the program reads
};

Shape shape_of(const torch::Tensor& x, const torch::Tensor& beta, const torch::Tensor& code, int64_t channels,
               int64_t inner) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "native kernel: x must be a contiguous CPU tensor");
  TORCH_CHECK(code.dtype() == torch::kInt32 && code.dim() == 2 && code.size(1) == 4, "native kernel: bad program");
  TORCH_CHECK_VALUE(beta.dim() == 2 && (beta.size(1) == 1 || beta.size(1) == channels), "beta of shape ",
                    beta.sizes(), " for an input of ", channels, " channels");
  TORCH_CHECK(beta.is_contiguous() && beta.scalar_type() == x.scalar_type(), "native kernel: beta must be contiguous, "
              "of x's dtype");
  Shape s{x.numel(), channels, inner, beta.size(0), beta.size(1), 0, 1, 0};
  const int32_t* ins = code.data_ptr<int32_t>();
  for (int64_t k = 0; k < code.size(0); ++k) s.used = std::max<int64_t>(s.used, ins[4 * k + 3] + 1);
  TORCH_CHECK(s.used <= s.n_betas, "native kernel: the program reads ", s.used, " betas of ", s.n_betas);
  s.tiles = (s.numel + TILE - 1) / TILE;
  s.grain = std::max<int64_t>(1, 16384 / TILE);
  return s;
}

// The betas' gradients, summed over each channel's elements as torch's sum does: a row's run of a channel's elements
// in the input's type, the runs added in double (where the channel is x's last dim, inner == 1, a linear layer's
// (batch, features), a row's segment instead, element i + k of it in channel c + k; with one beta for all channels, the
// whole tile). Summed run by run, that costs a horizontal sum of a vector per run: more than all the rest of the
// backward where a channel has 10 positions. So where no sum of a tile's gradients can overflow in any order (each
// |g| at most the type's max / numel), a thread adds them instead, element by element, into its own accumulator of
// one period of positions (Betas: position p is in channel p / inner) and sums a channel's positions once, at the
// end: the same sums in another order, equal to rounding. A tile with a larger value (a child running away) is summed
// run by run, so that a sum overflows, to inf or NaN, where torch's does. (NaN and inf propagate in any order.)
inline bool by_rows(int64_t inner, int64_t beta_cols) { return inner == 1 && beta_cols > 1; }

// The tile's runs: runs[r] = (first element, channel), ended by (n, -1).
inline int64_t channel_runs(int64_t beta_cols, int64_t channels, int64_t inner, int64_t start, int64_t n,
                            int64_t* runs) {
  int64_t count = 0;
  if (beta_cols == 1) {
    runs[0] = 0;
    runs[1] = 0;
    count = 1;
  } else if (by_rows(inner, beta_cols)) {
    for (int64_t i = 0, c = start % channels; i < n; c = 0) {
      runs[2 * count] = i;
      runs[2 * count + 1] = c;
      ++count;
      i = std::min(n, i + channels - c);
    }
  } else {
    int64_t c = (start / inner) % channels, left = inner - start % inner;
    for (int64_t i = 0; i < n; c = (c + 1 == channels ? 0 : c + 1), left = inner) {
      runs[2 * count] = i;
      runs[2 * count + 1] = c;
      ++count;
      i = std::min(n, i + left);
    }
  }
  runs[2 * count] = n;
  runs[2 * count + 1] = -1;
  return count;
}

template <typename T>
struct BetaSums {
  const Shape& s;
  const std::vector<int64_t>& rows;  // the gradient rows the program writes (backward_saved)
  int64_t period;
  T limit;                   // the largest |g| summed by position
  std::vector<T> position;   // per gradient row, one period of positions
  std::vector<double> sums;  // per gradient row, per beta column
  std::vector<int64_t> runs;

  BetaSums(const Shape& shape, const std::vector<int64_t>& rows_, int64_t period_)
      : s(shape), rows(rows_), period(period_), limit(std::numeric_limits<T>::max() / T(shape.numel)),
        position(period_ > 1 ? rows_.size() * period_ : 0, T(0)), sums(rows_.size() * shape.beta_cols, 0.0),
        runs(2 * TILE + 2) {}

  void add(const T* GP, int64_t start, int64_t n) {
    for (size_t r = 0; r < rows.size(); ++r) {
      const T* g = GP + rows[r] * TILE;
      double* out = sums.data() + r * s.beta_cols;
      if (period > 1) {
        T big = 0;
        _Pragma("omp simd reduction(max:big)")
        for (int64_t i = 0; i < n; ++i) big = std::max(big, std::abs(g[i]));
        if (big <= limit) {
          T* acc = position.data() + r * period;
          for (int64_t i = 0, p = start % period; i < n; p = 0) {
            const int64_t len = std::min(n - i, period - p);
            T* a = acc + p - i;
            _Pragma("omp simd")
            for (int64_t k = i; k < i + len; ++k) a[k] += g[k];
            i += len;
          }
          continue;
        }
      }
      const int64_t count = channel_runs(s.beta_cols, s.channels, s.inner, start, n, runs.data());
      for (int64_t k = 0; k < count; ++k) {
        const int64_t first = runs[2 * k], last = runs[2 * k + 2];
        double* a = out + runs[2 * k + 1];
        if (by_rows(s.inner, s.beta_cols)) {  // element first + i is channel runs[2k + 1] + i
          _Pragma("omp simd")
          for (int64_t i = first; i < last; ++i) a[i - first] += double(g[i]);
          continue;
        }
        T sum = 0;
        _Pragma("omp simd reduction(+:sum)")
        for (int64_t i = first; i < last; ++i) sum += g[i];
        a[0] += double(sum);
      }
    }
  }

  // The sums of the tiles added so far ((rows, beta_cols) in double), the positions' sums added in.
  std::vector<double> finish() {
    if (period > 1)
      for (size_t r = 0; r < rows.size(); ++r)
        for (int64_t c = 0; c < s.beta_cols; ++c) {
          const T* a = position.data() + r * period + c * s.inner;
          T sum = 0;
          _Pragma("omp simd reduction(+:sum)")
          for (int64_t k = 0; k < s.inner; ++k) sum += a[k];
          sums[r * s.beta_cols + c] += double(sum);
        }
    return sums;
  }
};

}  // namespace

// y; with ``saving`` the values of the costly nodes the backward needs (plan_of), row j of the second tensor for the
// plan's saved node j, but the root's, which is y (the tensor is undefined when none is saved, root included; without
// rows where the root's is the only one); and y again where the backward reads the root's value back (undefined
// elsewhere): what backward_saved takes as ``saved`` and ``y``.
std::vector<torch::Tensor> forward_saving(torch::Tensor x, torch::Tensor beta, torch::Tensor code, int64_t channels,
                                          int64_t inner, bool saving) {
  Shape s = shape_of(x, beta, code, channels, inner);
  const Program prog = program_of(code);
  if (prog.nodes == 0) return {x.clone(), torch::Tensor(), torch::Tensor()};
  auto y = torch::empty_like(x);
  const Plan plan = plan_of(prog, saving);
  const int64_t kept = static_cast<int64_t>(plan.saved.size());
  auto saved = kept || plan.root ? torch::empty({kept, s.numel}, x.options()) : torch::Tensor();
  const Betas bt = betas_of(s.used, s.beta_cols, s.channels, s.inner);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "actsearch_native_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    scalar_t* sp = kept ? saved.data_ptr<scalar_t>() : nullptr;
    const std::vector<scalar_t> pattern = beta_pattern(beta.data_ptr<scalar_t>(), s.used, s.beta_cols, s.inner, bt);
    at::parallel_for(0, s.tiles, s.grain, [&](int64_t t0, int64_t t1) {
      std::vector<scalar_t> V(prog.nodes * TILE);  // the rows of the values neither saved nor y
      std::vector<scalar_t*> at(prog.nodes);
      for (int64_t k = 0; k < prog.nodes; ++k) at[k] = V.data() + k * TILE;
      const int64_t last = prog.nodes - 1;
      for (int64_t t = t0; t < t1; ++t) {
        int64_t start = t * TILE, n = std::min(TILE, s.numel - start);
        // a saved node's values go straight to the saved tensor, the root's to y
        for (int64_t j = 0; j < kept; ++j) at[plan.saved[j]] = sp + j * s.numel + start;
        at[last] = yp + start;
        forward_tile(prog, n, xp + start, pattern.data() + start % bt.period, bt.width, at.data());
      }
    });
  });
  return {y, saved, plan.root ? y : torch::Tensor()};
}

torch::Tensor forward(torch::Tensor x, torch::Tensor beta, torch::Tensor code, int64_t channels, int64_t inner) {
  return forward_saving(x, beta, code, channels, inner, false)[0];
}

// dx and the betas' gradient; ``saved``: forward_saving's saved values (none or undefined: every needed value is
// computed again), and ``y`` its y where the plan reads the root's value back (none or undefined elsewhere).
std::vector<torch::Tensor> backward_saved(torch::Tensor x, torch::Tensor beta, torch::Tensor code, torch::Tensor dy,
                                          int64_t channels, int64_t inner, bool beta_grad,
                                          std::optional<torch::Tensor> saved_values, std::optional<torch::Tensor> y_) {
  const torch::Tensor saved = saved_values.value_or(torch::Tensor()), y = y_.value_or(torch::Tensor());
  Shape s = shape_of(x, beta, code, channels, inner);
  TORCH_CHECK(dy.is_contiguous() && dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type(),
              "native kernel: dy must be contiguous and shaped like x");
  const Program prog = program_of(code);
  if (prog.nodes == 0) return {dy.clone(), torch::zeros_like(beta)};
  auto dx = torch::empty_like(x);
  std::vector<double> total(beta_grad ? s.n_betas * 2 * s.beta_cols : 0, 0.0);  // (n_betas, 2, beta_cols)
  auto dbeta = beta_grad ? torch::empty({s.n_betas, s.beta_cols}, x.options()) : torch::Tensor();
  const Betas bt = betas_of(s.used, s.beta_cols, s.channels, s.inner);
  const Plan plan = plan_of(prog, saved.defined());
  const int64_t kept = static_cast<int64_t>(plan.saved.size());
  TORCH_CHECK(!saved.defined() || (saved.dim() == 2 && saved.size(0) == kept && saved.size(1) == s.numel &&
                                   saved.is_contiguous() && saved.scalar_type() == x.scalar_type()),
              "native kernel: the saved values do not fit this program and x");
  TORCH_CHECK(!plan.root || (y.defined() && y.sizes() == x.sizes() && y.is_contiguous() &&
                             y.scalar_type() == x.scalar_type()),
              "native kernel: the backward reads y back, and y does not fit x");
  std::vector<int64_t> rows;  // the gradient rows the program writes: 2j for beta j, 2j + 1 where its operator has two
  if (beta_grad)
    for (int64_t k = 0; k < prog.nodes; ++k)
      if (prog.at(k)[3] >= 0) {
        rows.push_back(2 * prog.at(k)[3]);
        if (mentions(prog.at(k)[0], 'q')) rows.push_back(2 * prog.at(k)[3] + 1);
      }
  std::mutex lock;
  std::vector<std::pair<int64_t, std::vector<double>>> parts;  // per range of tiles a thread took: its first, its sums
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "actsearch_native_backward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* dyp = dy.data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    const scalar_t* sp = kept ? saved.data_ptr<scalar_t>() : nullptr;
    const scalar_t* yp = plan.root ? y.data_ptr<scalar_t>() : nullptr;
    const std::vector<scalar_t> pattern = beta_pattern(beta.data_ptr<scalar_t>(), s.used, s.beta_cols, s.inner, bt);
    at::parallel_for(0, s.tiles, s.grain, [&](int64_t t0, int64_t t1) {
      std::vector<scalar_t> V(prog.nodes * TILE), G(prog.nodes * TILE), GP(2 * std::max<int64_t>(1, s.used) * TILE);
      std::vector<scalar_t*> at(prog.nodes);
      for (int64_t k = 0; k < prog.nodes; ++k) at[k] = V.data() + k * TILE;
      BetaSums<scalar_t> betas(s, rows, bt.period);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t start = t * TILE, n = std::min(TILE, s.numel - start);
        const scalar_t* P = pattern.data() + start % bt.period;
        // saved values are read where they are (a saved node is not computed again: plan.compute)
        for (int64_t j = 0; j < kept; ++j) at[plan.saved[j]] = const_cast<scalar_t*>(sp + j * s.numel + start);
        if (plan.root) at[prog.nodes - 1] = const_cast<scalar_t*>(yp + start);
        forward_tile(prog, n, xp + start, P, bt.width, at.data(), plan.compute.data());
        backward_tile(prog, prog.merged, n, xp + start, P, bt.width, at.data(), G.data(), dyp + start, dxp + start,
                      GP.data());
        if (prog.shares && !finite(dxp + start, n))  // eager's non-finite values (Program)
          backward_tile(prog, prog.apart, n, xp + start, P, bt.width, at.data(), G.data(), dyp + start, dxp + start,
                        GP.data());
        betas.add(GP.data(), start, n);
      }
      if (rows.empty()) return;
      std::vector<double> sums = betas.finish();
      std::lock_guard<std::mutex> guard(lock);
      parts.emplace_back(t0, std::move(sums));
    });
    // the threads' sums added in the order of their tiles, not of their finishing: the same bits on every run
    std::sort(parts.begin(), parts.end());
    for (const auto& part : parts)
      for (size_t r = 0; r < rows.size(); ++r)
        for (int64_t c = 0; c < s.beta_cols; ++c)
          total[rows[r] * s.beta_cols + c] += part.second[r * s.beta_cols + c];
    if (!beta_grad) return;
    // each sum rounded to the beta's type (where it overflows, as torch's sum does), then the two added
    scalar_t* db = dbeta.data_ptr<scalar_t>();
    for (int64_t j = 0; j < s.n_betas; ++j)
      for (int64_t c = 0; c < s.beta_cols; ++c)
        db[j * s.beta_cols + c] = scalar_t(total[(2 * j) * s.beta_cols + c]) +
                                  scalar_t(total[(2 * j + 1) * s.beta_cols + c]);
  });
  return {dx, dbeta};
}

std::vector<torch::Tensor> backward(torch::Tensor x, torch::Tensor beta, torch::Tensor code, torch::Tensor dy,
                                    int64_t channels, int64_t inner, bool beta_grad) {
  return backward_saved(x, beta, code, dy, channels, inner, beta_grad, std::nullopt, std::nullopt);
}

// y = f(x, beta) with its backward, as a C++ autograd function: a Python torch.autograd.Function costs about as much
// per call as the kernel itself at the proxy's sizes. Saves x and beta, and where a gradient will be asked for the
// values of its costly nodes that the backward needs (plan_of); the backward reruns the rest of the program per tile.
// Where a graph of the gradient is being built (create_graph, e.g. a gradient penalty) that backward, which is not
// differentiable itself, would treat f'(x) as a constant: there the eager operators compute the gradient instead, as
// a graph (search.language.kernel.eager_backward), so a gradient of the gradient is the eager path's. Each call runs at
// every activation site of every step, so it makes no call through torch's dispatcher that it can skip: ``.to()`` is
// one even where the type is already x's (``.contiguous()`` of a contiguous tensor is not).
inline torch::Tensor as_of(const torch::Tensor& t, const torch::Tensor& x) {
  return (t.scalar_type() == x.scalar_type() ? t : t.to(x.scalar_type())).contiguous();
}

// x's channels (dim 1; 1 for a vector) and the positions per channel (the product of the dims after it)
inline std::pair<int64_t, int64_t> dims_of(const torch::Tensor& x) {
  int64_t inner = 1;
  for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
  return {x.dim() >= 2 ? x.size(1) : 1, inner};
}

struct NativeFunction : public torch::autograd::Function<NativeFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor beta,
                               torch::Tensor code, bool saving) {
    const auto [channels, inner] = dims_of(x);
    auto out = forward_saving(x.contiguous(), as_of(beta, x), code, channels, inner, saving);
    // the inputs themselves: the eager backward needs their graphs; y where the backward reads it, as autograd keeps
    // an output (an in-place change of y before the backward is then an error, as for torch's exp or tanh)
    ctx->save_for_backward({x, beta, code, out[1], out[2]});
    return out[0];
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &beta = saved[1];
    const bool x_grad = ctx->needs_input_grad(0), beta_grad = ctx->needs_input_grad(1);
    torch::Tensor dx, dbeta;
    if (torch::GradMode::is_enabled()) {
      pybind11::gil_scoped_acquire gil;
      auto out = pybind11::module_::import("search.language.kernel").attr("eager_backward")(
          saved[2], x, beta, grads[0], x_grad, beta_grad).cast<std::vector<torch::Tensor>>();
      dx = out[0], dbeta = out[1];
    } else {
      const auto [channels, inner] = dims_of(x);
      auto out = backward_saved(x.contiguous(), as_of(beta, x), saved[2], as_of(grads[0], x),
                                channels, inner, beta_grad, saved[3], saved[4]);
      dx = out[0];
      if (beta_grad) dbeta = out[1].scalar_type() == beta.scalar_type() ? out[1] : out[1].to(beta.scalar_type());
    }
    return {x_grad ? dx : torch::Tensor(), beta_grad ? dbeta : torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// f(x, beta) for autograd; beta: (n_betas, channels) or (n_betas, 1), None for a program without betas.
torch::Tensor apply(torch::Tensor x, std::optional<torch::Tensor> beta, torch::Tensor code) {
  const torch::Tensor b = beta.has_value() && beta->defined() ? *beta : torch::empty({0, 1}, x.options());
  // values are saved for a backward only where one can come (under no_grad, or for an input that needs no gradient,
  // the forward writes y alone)
  const bool saving = torch::GradMode::is_enabled() && (x.requires_grad() || b.requires_grad());
  return NativeFunction::apply(x, b, code, saving);
}
