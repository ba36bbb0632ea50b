// Imported before anything else in a Hermes test bundle. The bundles are lowered to ES5 (this
// Hermes compiles no classes), and TypeScript's ES5 form of `class E extends Error` calls
// `Error.call(this, message)`, which returns a new plain Error: instances lose their subclass
// prototype (no `instanceof E`, no overridden `toString`, so the generated ApiError's `message`
// getter, which reads `toString()`, would recurse). An app's Metro/Babel build keeps the chain
// (Babel wraps native superclasses). This restores what the app sees: `Error` called on an object
// that is already an Error instance (a subclass constructor's super call) initializes that object
// instead of making a new one. `new Error(...)`, `Error(...)`, `instanceof Error` and the native
// error types are unchanged.
const NativeError = Error;
type ErrorOptions = { cause?: unknown };

function HermesTestError(this: unknown, message?: string, options?: ErrorOptions): Error | void {
  if (!(this instanceof NativeError) || Object.getPrototypeOf(this) === NativeError.prototype) {
    return new NativeError(message, options as never);
  }
  const native = new NativeError(message, options as never);
  const self = this as Error & { cause?: unknown };
  if (message !== undefined) {
    Object.defineProperty(self, 'message', { value: native.message, writable: true, configurable: true });
  }
  if (options && 'cause' in options) self.cause = options.cause;
  Object.defineProperty(self, 'stack', { value: native.stack, writable: true, configurable: true });
}
HermesTestError.prototype = NativeError.prototype;
Object.setPrototypeOf(HermesTestError, NativeError); // statics (captureStackTrace, …)
Object.defineProperty(HermesTestError, 'name', { value: 'Error' });
(globalThis as Record<string, unknown>).Error = HermesTestError;
export {};
