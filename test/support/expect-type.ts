/**
 * Compile-time checks for type tests (checked by `tsc` in `npm test`; nothing happens at run time).
 *
 * True only when `A` and `B` are the same type, not merely assignable one way: two generic
 * functions are compared, and the compiler relates them only when the conditional types are
 * identical (a known idiom, e.g. the `Equals` of type-challenges and of the `expect-type` package).
 */
export type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;

/**
 * `expectType<Expected>()(value)` compiles only when the value's type is exactly `Expected`: on a
 * mismatch the call needs a second argument of type `never`, which nothing can supply.
 */
export function expectType<Expected>(): <Actual>(value: Actual, ...mismatch: Equal<Actual, Expected> extends true ? [] : [never]) => void {
  return () => {};
}
