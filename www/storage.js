// Where the page keeps downloaded model files: one Cache Storage bucket, named here only. The
// worker passes the name to the wasm engine (src/web/cache.rs), which fills the bucket; the page
// shows and clears it; the tests read it from this module.

/**
 * The Cache Storage bucket of downloaded model files. v2: entries sealed with their length and a
 * checksum, f32 matrices kept in f16.
 */
export const CACHE_NAME = 'sciscore-models-v2';

/** Buckets of earlier versions, deleted on start (v1 kept f32 weights whole and unsealed). */
export const OLD_CACHE_NAMES = ['sciscore-models-v1'];
