// Activation functions shared by the elementwise, dense-layer and backward kernels (prepended to
// them in src/gpu/kernels/). Codes as ACT_CODES in src/gpu/kernels/elementwise.ts: 0 gelu_new,
// 1 gelu (erf), 2 relu, 3 silu, 4 gelu_fast, 5 quick_gelu.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

// erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit).
fn erf_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}

// tanh without overflow for large |x|.
fn tanh_(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

fn activation(x: f32, code: u32) -> f32 {
  switch code {
    case 0u: { return 0.5 * x * (1.0 + tanh_(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))); }
    case 1u: { return 0.5 * x * (1.0 + erf_(x * 0.7071067811865476)); }
    case 2u: { return max(x, 0.0); }
    case 3u: { return x / (1.0 + exp(-x)); }
    case 4u: { return 0.5 * x * (1.0 + tanh_(x * 0.7978845608 * (1.0 + 0.044715 * x * x))); }
    case 5u: { return x / (1.0 + exp(-1.702 * x)); }
    default: { return x; }
  }
}

// d activation / dx for codes 0..3 (the ones with gradients).
fn activation_deriv(x: f32, code: u32) -> f32 {
  switch code {
    case 0u: {
      let t = tanh_(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x));
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case 1u: { return 0.5 * (1.0 + erf_(x * 0.7071067811865476)) + x * exp(-0.5 * x * x) * 0.3989422804014327; }
    case 2u: { return select(0.0, 1.0, x > 0.0); }
    case 3u: { let s = 1.0 / (1.0 + exp(-x)); return s * (1.0 + x * (1.0 - s)); }
    default: { return 1.0; }
  }
}
