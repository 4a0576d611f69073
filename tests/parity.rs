//! CPU forward vs the transformers 4.50.3 goldens of `scripts/make_fixtures.py`: token ids,
//! every recorded hidden state, pooled outputs, projected embeddings, scores and probabilities.

mod common;
use common::*;

#[test]
fn token_ids_equal_clip_tokenizer_fast() {
    for m in MODELS {
        let model = load(m);
        let g = golden_json(m);
        for (p, (prompt, want)) in strings(&g["prompts"])
            .iter()
            .zip(g["input_ids"].as_array().unwrap())
            .enumerate()
        {
            let want: Vec<u32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                model.tokenize(prompt).unwrap(),
                want,
                "{m}: prompt {p} {prompt:?}"
            );
        }
    }
}

#[test]
fn text_tower_matches_every_recorded_state() {
    for m in MODELS {
        let model = load(m);
        let (g, t) = (golden_json(m), golden_tensors(m));
        let proj = model.config().projection_dim;
        let (mut worst_cos, mut worst_abs) = (1.0f64, 0.0f64);
        for (p, prompt) in strings(&g["prompts"]).iter().enumerate() {
            let ids = model.tokenize(prompt).unwrap();
            let (feats, tr) = model.trace_text(&ids).unwrap();
            let layers = tr.hidden.len() - 1;
            for (name, ours) in [
                ("hidden.0", &tr.hidden[0]),
                ("hidden.1", &tr.hidden[1]),
                ("hidden.last", &tr.hidden[layers]),
                ("last_hidden_state", &tr.last_hidden_state),
                ("pooled", &tr.pooled),
            ] {
                let key = format!("text.{p}.{name}");
                assert_close(&format!("{m} {key}"), ours, &t[&key].1, HIDDEN_REL_F32);
            }
            let want = &t["text_embeds"].1[p * proj..][..proj];
            let cos = cosine(&feats, want);
            assert!(cos >= EMBED_COS_F32, "{m}: text_embeds[{p}] cos {cos}");
            let d = assert_close(
                &format!("{m} text_embeds[{p}]"),
                &feats,
                want,
                HIDDEN_REL_F32,
            );
            (worst_cos, worst_abs) = (worst_cos.min(cos), worst_abs.max(d));
        }
        eprintln!("parity {m} text_embeds: min cos {worst_cos:.9}, max |diff| {worst_abs:.2e}");
    }
}

#[test]
fn vision_tower_matches_every_recorded_state() {
    for m in MODELS {
        let model = load(m);
        let (g, t) = (golden_json(m), golden_tensors(m));
        // bf16 shares tiny224's preprocessor, so its goldens leave the pixels out.
        let pix = if t.keys().any(|k| k.starts_with("pixel_values.")) {
            t.clone()
        } else {
            golden_tensors("tiny224")
        };
        let proj = model.config().projection_dim;
        let (mut worst_cos, mut worst_abs) = (1.0f64, 0.0f64);
        for (i, name) in strings(&g["images"]).iter().enumerate() {
            let pixels = &pix[&format!("pixel_values.{name}")].1;
            let (feats, tr) = model.trace_image(pixels).unwrap();
            let layers = tr.hidden.len() - 1;
            for (state, ours) in [
                ("hidden.0", &tr.hidden[0]),
                ("hidden.1", &tr.hidden[1]),
                ("hidden.last", &tr.hidden[layers]),
                ("pooled", &tr.pooled),
            ] {
                let key = format!("vision.{name}.{state}");
                assert_close(&format!("{m} {key}"), ours, &t[&key].1, HIDDEN_REL_F32);
            }
            let want = &t["image_embeds"].1[i * proj..][..proj];
            let cos = cosine(&feats, want);
            assert!(
                cos >= EMBED_COS_F32,
                "{m}: image_embeds[{i}] ({name}) cos {cos}"
            );
            (worst_cos, worst_abs) = (worst_cos.min(cos), worst_abs.max(max_abs(&feats, want).0));
        }
        eprintln!("parity {m} image_embeds (golden pixels): min cos {worst_cos:.9}, max |diff| {worst_abs:.2e}");
    }
}

#[test]
fn scores_and_probs_from_files_match() {
    for m in MODELS {
        let model = load(m);
        let g = golden_json(m);
        let names = strings(&g["images"]);
        let bytes = fixture_images(&names);
        let inputs = image_inputs(&names, &bytes);
        let logit_scale = g["logit_scale"].as_f64().unwrap();
        assert_eq!(model.logit_scale() as f64, logit_scale, "{m}: logit_scale");
        let mut worst = 0.0f64;
        for (p, prompt) in strings(&g["prompts"]).iter().enumerate() {
            let got = pollster::block_on(model.score(prompt, &inputs)).unwrap();
            for (i, s) in got.iter().enumerate() {
                let (ws, wp) = (
                    g["scores"][p][i].as_f64().unwrap(),
                    g["probs"][p][i].as_f64().unwrap(),
                );
                worst = worst.max((s.score as f64 - ws).abs());
                assert!(
                    (s.score as f64 - ws).abs() <= SCORE_ABS_F32,
                    "{m}: score[{p}][{i}] {} vs {ws}",
                    s.score
                );
                // prob = softmax(score): its error is bounded by the score error times prob.
                assert!(
                    (s.prob as f64 - wp).abs() <= SCORE_ABS_F32,
                    "{m}: prob[{p}][{i}] {} vs {wp}",
                    s.prob
                );
            }
        }
        eprintln!("parity {m} scores from image files: max |score diff| {worst:.2e}");
        for pair in g["pairs"].as_array().unwrap() {
            let p = pair["prompt"].as_u64().unwrap() as usize;
            let idx: Vec<usize> = pair["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let two = [inputs[idx[0]], inputs[idx[1]]];
            let got = pollster::block_on(model.score(&strings(&g["prompts"])[p], &two)).unwrap();
            let want: Vec<f64> = pair["probs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!(
                (got[0].prob as f64 - want[0]).abs() <= SCORE_ABS_F32,
                "{m}: pair {pair}"
            );
            assert_eq!(
                got[0].prob > got[1].prob,
                want[0] > want[1],
                "{m}: pairwise decision for {pair}"
            );
        }
    }
}
