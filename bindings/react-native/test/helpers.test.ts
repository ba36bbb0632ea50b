// The hand-written helpers' text codecs, with and without the engine's TextDecoder/TextEncoder
// (Hermes has no TextDecoder).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { responseJson, responseText, utf8Bytes } from './api';

const SAMPLES = ['', 'plain ascii', 'café ñ ü', '日本語のテキスト', 'emoji 🚀👍🏽 and 𝄞', '{"a":[1,2,"ß"]}'];

function withoutCodecs(body: () => void): void {
  const g = globalThis as { TextDecoder?: unknown; TextEncoder?: unknown };
  const saved = [g.TextDecoder, g.TextEncoder];
  g.TextDecoder = undefined;
  g.TextEncoder = undefined;
  try {
    body();
  } finally {
    [g.TextDecoder, g.TextEncoder] = saved;
  }
}

for (const [name, run] of [
  ['with TextDecoder/TextEncoder', (b: () => void) => b()],
  ['with the fallback codecs', withoutCodecs],
] as const) {
  test(`utf8Bytes and responseText round-trip, ${name}`, () => {
    run(() => {
      for (const s of SAMPLES) {
        const body = utf8Bytes(s);
        assert.ok(body instanceof ArrayBuffer);
        assert.deepEqual(Buffer.from(body), Buffer.from(s, 'utf8'), s);
        assert.equal(responseText({ body }), s);
      }
      assert.deepEqual(responseJson({ body: utf8Bytes('{"a":[1,2,"ß"]}') }), { a: [1, 2, 'ß'] });
    });
  });
}

test('invalid UTF-8 becomes U+FFFD in the fallback decoder', () => {
  withoutCodecs(() => {
    const bytes = (...b: number[]) => new Uint8Array(b).buffer;
    assert.equal(responseText({ body: bytes(0x61, 0xff, 0x62) }), 'a\ufffdb');
    assert.equal(responseText({ body: bytes(0x61, 0xe2, 0x82) }), 'a\ufffd'); // truncated sequence
    assert.equal(responseText({ body: bytes(0xc0, 0xaf) }), '\ufffd\ufffd'); // overlong
    assert.equal(responseText({ body: bytes(0xe2, 0x82, 0xac) }), '€');
  });
});
