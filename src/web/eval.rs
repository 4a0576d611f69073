//! The page's Science-T2I accuracy panel: the loaded model evaluated on parquet shards held in
//! memory, by the row loop `sciscore eval` runs ([`crate::jobs::eval::evaluate_in_memory`]).
//! (Not a throughput benchmark: that is `bench.rs`.)

use super::{read_named, to_js, SciScore};
use crate::jobs::eval::{evaluate_in_memory, EvalRow, RowError};
use js_sys::{Array, Function, Promise, Reflect};
use std::collections::BTreeMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// What the panel shows: the report of `sciscore eval --json`, its row errors and every row.
#[derive(serde::Serialize)]
struct Accuracy {
    rows: usize,
    overall_accuracy: f64,
    category_accuracy: BTreeMap<String, f64>,
    law_accuracy: BTreeMap<String, f64>,
    errors: Vec<RowError>,
    per_row: Vec<EvalRow>,
}

#[wasm_bindgen]
impl SciScore {
    /// Evaluates the model on Science-T2I parquet shards (`[{name, bytes: Uint8Array}]`, in order;
    /// row numbers run on across them) with the semantics of `sciscore eval`; resolves to
    /// `{rows, overall_accuracy, category_accuracy, law_accuracy, errors, per_row}`.
    /// `onProgress({done, total})` after every row. The files are held in memory whole.
    #[wasm_bindgen(js_name = evalParquet)]
    pub fn eval_parquet(&self, files: Array, on_progress: Option<Function>) -> Promise {
        let model = Rc::clone(&self.model);
        wasm_bindgen_futures::future_to_promise(async move {
            let files = read_named(&files).map_err(to_js)?;
            let (report, per_row) = evaluate_in_memory(&model, files, |done, total| {
                if let Some(f) = &on_progress {
                    let p = js_sys::Object::new();
                    let _ = Reflect::set(&p, &"done".into(), &(done as f64).into());
                    let _ = Reflect::set(&p, &"total".into(), &(total as f64).into());
                    let _ = f.call1(&JsValue::NULL, &p);
                }
            })
            .await
            .map_err(to_js)?;
            let out = Accuracy {
                rows: report.rows,
                overall_accuracy: report.overall_accuracy,
                category_accuracy: report.category_accuracy,
                law_accuracy: report.law_accuracy,
                errors: report.errors,
                per_row,
            };
            serde::Serialize::serialize(&out, &serde_wasm_bindgen::Serializer::json_compatible())
                .map_err(JsValue::from)
        })
    }
}
