"""The "The real model" section of REPORT.md, rendered from ``results["real"]`` only."""

from typing import Any

from experiments.real.common import fmt_iv
from experiments.real.seal import report_lines as seal_lines

FINDINGS = {
    "a": ("knowledge damage (PAPERS.md 5, localisation hypothesis)", "e5_damage_proxy"),
    "b": ("epistemic verbalisation (PAPERS.md 4)", "e4_markers"),
    "b-features": ("SAE features before self-check phrases (PAPERS.md 4)", "e4_markers"),
    "b-diff": ("crosscoder diff: parent-only latents beyond matched noise (PAPERS.md 4)", "e4_markers"),
    "c": ("latent reasoning, pass@k (PAPERS.md 6)", "e6_elicitation"),
    "c-reasoning": (
        "Information Gain, early-answering AOC, CoT-decoding (PAPERS.md 1, 2, 6)",
        "e1_info_gain",
    ),
    "d": ("steering self-checks back (PAPERS.md 6, methods)", "e6_elicitation"),
    "e-seal": (
        "overthinking control, SEAL (PAPERS.md 9; organism column: finding 9's forced-length verdict)",
        "e9_cot_length",
    ),
}


def _f(x: Any, digits: int = 3) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return "-" if x is None else str(x)


def render_real(real: dict[str, Any], organism: dict[str, Any] | None = None) -> list[str]:
    """Markdown lines of the real model's section: verdicts beside the organism's, then a table per finding.

    Example:
        >>> render_real({"status": "skipped: x", "model": "smollm2", "profile": "quick"})[:3]
        ['## The real model', '', '**skipped: x** (model `smollm2`, profile `quick`).']
    """
    lines = ["## The real model", ""]
    status = real.get("status", "?")
    if status.startswith("skipped"):
        return lines + [f"**{status}** (model `{real.get('model')}`, profile `{real.get('profile')}`).", ""]
    st = real.get("stages", {})
    base = st.get("base", {})
    model = base.get("model", {})
    lines += [
        f"Model `{real['model']}` (`{model.get('spec', '-')}`, {model.get('n_layers', '-')} layers, d_model "
        f"{model.get('d_model', '-')}, fingerprint `{str(model.get('fingerprint', ''))[:23]}...`), profile "
        f"`{real['profile']}`, status **{status}**. Self-check phrases counted (case-insensitive, "
        f'whole words; "let me check" counts once, as check): '
        f"{', '.join(real.get('self_check_phrases', []))}. "
        "Intervals are 95% (paired percentile bootstrap unless marked Wilson); a verdict needs one "
        "that excludes 0.",
        "",
    ]
    lines += _sizes(real) + _timings(real)
    if real.get("failures"):
        lines += ["Failed stages:", ""] + [f"- `{k}`: {v}" for k, v in real["failures"].items()] + [""]
    lines += _claims(real, organism or {})
    lines += _models(st) + _knowledge(st.get("knowledge")) + _verbal(st.get("verbalisation"))
    lines += _features(st.get("features")) + _diff(st.get("diff")) + _latent(st.get("latent"))
    lines += _reasoning(st.get("reasoning")) + _steering(st.get("steering")) + seal_lines(st.get("seal"))
    return lines


def _sizes(real: dict[str, Any]) -> list[str]:
    s = real.get("sizes", {})
    return [
        f"Sizes: {s.get('n_facts')} facts offered to the filter, at most {s.get('n_eval_facts')} known "
        f"facts per split measured, {s.get('n_scorer_facts')} in the localisation scorer; "
        f"{s.get('n_problems')} arithmetic test problems (greedy, {s.get('max_new_tokens')} new tokens); "
        f"fine-tunes on {s.get('n_train')} training "
        f"problems, batch {s.get('batch_size')}, lr {s.get('lr')}, {s.get('rehearse_facts')} of each batch "
        f"rehearsed facts; sft-verbalise {s.get('verbalise_steps')} steps, sft-answer doses "
        f"{list(s.get('answer_doses', []))}, sft-self {s.get('self_steps')} steps; pass@k on "
        f"{s.get('passk_problems')} problems x {s.get('passk_samples')} samples (T={s.get('temperature')}, "
        f"top_p={s.get('top_p')}); steering on {s.get('steer_problems')} problems at scales "
        f"{list(s.get('steer_scales', []))}.",
        "",
    ]


def _timings(real: dict[str, Any]) -> list[str]:
    secs = real.get("seconds", {})
    out = ["| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in secs.items()]
    return out + [""]


def _claims(real: dict[str, Any], organism: dict[str, Any]) -> list[str]:
    out = ["| finding | organism verdict | real-model verdict | why (real model) |", "|---|---|---|---|"]
    for key, (title, exp) in FINDINGS.items():
        c = real.get("claims", {}).get(key, {})
        org = (organism.get(exp) or {}).get("claim") or {}
        out.append(
            f"| ({key}) {title} | {org.get('verdict', '-')} | **{c.get('verdict', '-')}** | "
            f"{c.get('why', '-')} |"
        )
    return out + [""]


def _models(st: dict[str, Any]) -> list[str]:
    out = ["### Checkpoints", ""]
    known = st.get("base", {}).get("known_facts")
    if known:
        out += [
            f"Facts: {known['note']}; splits {known['splits']} (held-out facts are never in any "
            "fine-tuning data).",
            "",
        ]
    parent = st.get("parent", {})
    if parent:
        out += [f"Parent: {parent.get('why')}.", ""]
    rows = []
    for label, s in (("base", st.get("base")), ("parent", parent if parent.get("made") else None)):
        if s:
            rows.append((label, s, None))
    tunes = st.get("tunes", {})
    for label, s in tunes.get("tunes", {}).items():
        rows.append((label, s, s.get("accuracy_gain")))
    out += [
        "| checkpoint | accuracy [Wilson] | gain over parent | raised? | self-checks / response | "
        "held-out recall | held-out log-prob | rehearsed recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, s, gain in rows:
        f = s.get("facts", {})
        out.append(
            f"| {label} | {fmt_iv(s.get('accuracy_wilson'))} | {fmt_iv(gain)} | "
            f"{'-' if gain is None else ('yes' if s.get('raised_accuracy') else 'no')} | "
            f"{_f(s.get('self_checks_per_response'), 2)} | {_f(f.get('heldout', {}).get('recall'))} | "
            f"{_f(f.get('heldout', {}).get('mean_logprob'))} | {_f(f.get('rehearsed', {}).get('recall'))} |"
        )
    for name, run in tunes.get("runs", {}).items():
        if "error" in run:
            out.append(f"\n{name} was not made: {run['error']}")
    if tunes.get("focus"):
        out.append(f"\nFindings (b)-(d) study **{tunes['focus']}**: {tunes.get('focus_why')}.")
    return out + [""]


def _knowledge(k: dict[str, Any] | None) -> list[str]:
    if not k:
        return []
    out = [
        "### (a) Knowledge damage along the dose axis",
        "",
        "| tune | split | recall diff vs parent | log-prob diff vs parent | damaged? |",
        "|---|---|---|---|---|",
    ]
    for label, row in k["table"].items():
        for split, r in row.items():
            out.append(
                f"| {label} | {split} | {fmt_iv(r['recall_diff'])} | {fmt_iv(r['logprob_diff'])} | "
                f"{'yes' if r['damaged'] else 'no'} |"
            )
    out.append("")
    loc, ctl = k.get("localisation"), k.get("control")
    if loc is None:
        out += [f"Localisation: {k.get('localisation_status')}.", ""]
        return out
    out += [
        f"Localisation of {k['strongest']} (scorer: mean log-prob of {k.get('n_scorer_facts')} held-out "
        "facts; "
        "restoration = share of the lost score won back by the parent's weights at one site):",
        "",
        "| model | score parent -> patched model | layers named | best site (restoration) |",
        "|---|---|---|---|",
    ]
    for name, r in ((k["strongest"], loc), (f"control: noise in blocks.{ctl['layer']}.mlp", ctl)):
        out.append(
            f"| {name} | {r['score_parent']:.3f} -> {r['score_tuned']:.3f} | {r['damaged_layers']} | "
            f"{r['best_site']} ({_f(r['best_restoration'], 2)}) |"
        )
    return out + [""]


def _verbal(v: dict[str, Any] | None) -> list[str]:
    if not v:
        return []
    out = [
        "### (b) Self-check phrases per response",
        "",
        f"Parent: {v['parent_self_checks_per_response']:.2f} per response.",
        "",
        "| tune | per response | diff vs parent | raised accuracy? |",
        "|---|---|---|---|",
    ]
    for t, r in v["tunes"].items():
        out.append(
            f"| {t} | {r['self_checks_per_response']:.2f} | {fmt_iv(r['diff'])} | "
            f"{'yes' if r['raised_accuracy'] else 'no'} |"
        )
    return out + [""]


def _latent(c: dict[str, Any] | None) -> list[str]:
    if not c:
        return []
    ks = list(next(iter(c["pass_at_k"].values())))
    out = [
        "### (c) pass@k",
        "",
        f"{c['n_problems']} problems, n={c['n']} samples each (T={c['temperature']}, top_p={c['top_p']}).",
        "",
        "| model | " + " | ".join(f"pass@{k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for m, row in c["pass_at_k"].items():
        out.append(f"| {m} | " + " | ".join(_f(row[k]) for k in ks) + " |")
    out += [
        "",
        f"pass@1 tune - parent: {fmt_iv(c['tune_minus_parent_at_1'])}; pass@{c['n']} parent - tune: "
        f"{fmt_iv(c['parent_minus_tune_at_n'])}.",
        "",
    ]
    return out


def _steering(s: dict[str, Any] | None) -> list[str]:
    if not s or not s.get("scales"):
        return [] if not s else ["### (d) Steering", "", s["claim"]["why"], ""]
    u = s["unsteered"]
    methods = s.get("methods") or {"always": {"scales": s["scales"], "random": s["random"]}}
    out = [
        "### (d) Steering the tune with the parent's self-check vector",
        "",
        f"Vector at `{s['hook']}` (norm {s['vector_norm']:.3f}) from {s['n_before_phrase']} positions "
        f"before a self-check phrase vs {s['n_other']} other response positions; applied to {s['tune']} "
        f"on {s['n_problems']} problems (unsteered: {u['self_checks_per_response']:.2f} self-checks per "
        "response, "
        f"accuracy {u['accuracy']:.3f}). Why this tune: {s.get('tune_why', '-')}.",
        "",
    ]
    if "gate_threshold" in s:
        out += [
            f"Methods: always-on (every position, prompt included); targeted (only at the step-end tokens "
            f"{s.get('step_end_ids')}: {s.get('n_before_phrase_at_step_end', '-')} of the "
            f"{s['n_before_phrase']} positions before a phrase hold one); conditional (only where the tune's "
            f"activation along the vector's unit direction exceeds {s['gate_threshold']:.3f}, halfway "
            f"between the parent's mean {s['parent_score_before_phrase']:.3f} before a phrase and "
            f"{s['parent_score_other']:.3f} elsewhere). Each method's control: a random direction of the "
            "same norm at the same positions. Steered share: of prompt + response tokens (targeted), of "
            "the positions the gate saw over every pass (conditional).",
            "",
        ]
    feat = s.get("sae_feature")
    if feat:
        out += [
            f"SAE methods: the parent SAE's feature {feat.get('feature')} at `{feat.get('hook')}` (the "
            "features stage's first choice; mean "
            f"{_f(feat.get('typical'), 2)} before a phrase), clamped in the tune at the step-end tokens to "
            f"{', '.join(_f(v, 2) for v in feat.get('clamp_values', []))} (`sae_clamp`, scales are multiples "
            f"of that mean), and amplified x{feat.get('amplify')} where it fires in the parent itself "
            "(`sae_amplify (parent)`, paired against the unsteered parent, reported beside the verdict).",
            "",
        ]
    out += [f"{name}: not run ({why})." for name, why in (s.get("not_run") or {}).items()]
    out += [
        "| method | vector | scale | steered share | self-checks per response | self-checks diff "
        "| accuracy diff | KL on neutral text |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in methods.items():
        for kind in ("scales", "random"):
            for scale, m in r[kind].items():
                chosen = " (chosen)" if kind == "scales" and scale == r.get("chosen_scale") else ""
                vector = "self-check" if kind == "scales" else "random, same norm"
                out.append(
                    f"| {name} | {vector} | {scale}{chosen} | "
                    f"{_f(m.get('steered_share'), 2)} | {m['self_checks_per_response']:.2f} | "
                    f"{fmt_iv(m['self_checks_diff'], 2)} | {fmt_iv(m['accuracy_diff'], 2)} | "
                    f"{fmt_iv(m['kl_neutral'])} |"
                )
    rec = s.get("recovery")
    if rec:
        out += [
            "",
            f"Recovery after a hand-written wrong step ({rec['n_problems']} problems, the partial answer "
            f"ends with a wrong step, greedy continuation of {rec['max_new_tokens']} tokens; each method at "
            "its chosen scale), paired against the unsteered tune (rows marked `vs parent`: against the "
            "unsteered parent):",
            "",
            "| model | recovered | self-check after the wrong step | recovered diff | self-check diff |",
            "|---|---|---|---|---|",
        ]
        for label, r in rec["runs"].items():
            against = " (vs parent)" if r.get("paired_against") == "parent" else ""
            out.append(
                f"| {label}{against} | {r['recovery_rate']:.2f} | {r['self_check_rate']:.2f} | "
                f"{fmt_iv(r.get('recovery_diff'), 2)} | {fmt_iv(r.get('self_check_diff'), 2)} |"
            )
    return out + ["", f"**{s['claim']['verdict']}**: {s['claim']['why']}", ""]


def _features(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    out = ["### (b) SAE features before self-check phrases", ""]
    sae = r.get("sae")
    if not sae:
        return out + [r["claim"]["why"], ""]
    out += [
        f"A paired cache of every model over the parent's {r['n_rows']} responses at `{r['hook']}`; "
        f"a top-k SAE ({sae['d_sae']} features, k={sae['k']}) trained on the parent: explained "
        f"variance {sae['explained_variance']:.3f}, dead {sae['dead_fraction']:.3f}, on "
        f"{sae['n_positions']} real-token positions. {r['n_before_positions']} positions just before a "
        f"self-check phrase vs {r.get('n_other_positions')} other response positions.",
        "",
        "| feature | mean before phrase | mean elsewhere | top contexts (parent) |",
        "|---|---|---|---|",
    ]
    for f in r.get("features", []):
        ctx = " / ".join(f"`{c['text']}`" for c in f.get("contexts", [])[:2])
        ctx = ctx.replace("|", "\\|").replace("\n", " ")
        out.append(f"| {f['feature']} | {f['mean_before']:.3f} | {f['mean_other']:.3f} | {ctx} |")
    out += [
        "",
        "| model - parent | chosen features before phrases | matched control | chosen beyond control |",
        "|---|---|---|---|",
    ]
    for m, d in r.get("diffs", {}).items():
        out.append(
            f"| {m} | {fmt_iv(d['diff'])} | {fmt_iv(d.get('control_diff'))} | "
            f"{fmt_iv(d.get('diff_minus_control'))} |"
        )
    return out + [""]


def _diff(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    out = ["### (b) Crosscoder diff of the parent against its tunes", ""]
    if not r.get("tunes"):
        return out + [r["claim"]["why"], ""]
    c = r["config"]
    out += [
        f"A BatchTopK crosscoder ({c['n_latents']} latents, k {c['k']}, {c['steps']} steps) per pair at "
        f"`{r['hook']}` over stage features's cache ({r['n_positions']} positions, "
        f"{r['n_before_positions']} just before a self-check phrase); diffed: {', '.join(r['tunes'])} "
        f"({r['tunes_why']}). Latents by decoder-norm ratio: parent-only (< 0.1), shared (0.3-0.7), "
        "tuned-only (> 0.9); model-specific ones flagged by latent scaling do not survive. The control: "
        "the parent with matched noise (the tune's norm in every weight tensor), same pipeline.",
        "",
        "| tune | parent-only surviving | shared | tuned-only surviving | noise control's parent-only | "
        "best pre-phrase latent: kind, ratio, AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for t, x in r["tunes"].items():
        best = x.get("best_marker_latent")
        cell = "-"
        if best:
            flag = (
                ""
                if best["survives_scaling"] or best["kind"] not in ("base-only", "tuned-only")
                else " (flagged)"
            )
            kind = "parent-only" if best["kind"] == "base-only" else best["kind"]
            cell = f"{kind}{flag}, {best['ratio']:.2f}, {_f(best['auroc'], 2)}"
        out.append(
            f"| {t} | {x['base_only_surviving']} | {x['counts']['shared']} | {x['tuned_only_surviving']} | "
            f"{x['control']['base_only_surviving']} | {cell} |"
        )
    checks = [(t, x["direction"]) for t, x in r["tunes"].items() if x.get("direction")]
    if checks:
        out += [
            "",
            "Each tune's top surviving parent-only latent: its decoder direction in the parent, read at "
            "the pre-phrase positions (mean per response, paired over responses):",
            "",
            "| tune | latent | tune - parent | noise - parent | tune - noise |",
            "|---|---|---|---|---|",
        ]
        for t, d in checks:
            out.append(
                f"| {t} | {d['latent']} | {fmt_iv(d['tune_minus_parent'])} | "
                f"{fmt_iv(d['noise_minus_parent'])} | {fmt_iv(d['tune_minus_noise'])} |"
            )
    return out + ["", f"**{r['claim']['verdict']}**: {r['claim']['why']}", ""]


def _reasoning(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    out = [
        "### (c) Information Gain, early answering, CoT-decoding on the models' own solutions",
        "",
        f"IG scored by `{r['scorer']}` (the base; one fixed scorer for every model).",
        "",
        "| model | IG total (nats) | IG normalised | IG per-step PPL form | traces | AOC | "
        "greedy acc. | CoT-decoding acc. (gain) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in ("parent", *r["tunes"]):
        ig, ea, cot = r["info_gain"].get(m, {}), r["early_answering"].get(m, {}), r["cot_decoding"].get(m, {})
        out.append(
            f"| {m} | {fmt_iv(ig.get('total_interval'))} | {fmt_iv(ig.get('normalised_interval'))} | "
            f"{fmt_iv(ig.get('ppl_info_gain_interval'))} | {ig.get('n_traces', 0)} | "
            f"{fmt_iv(ea.get('aoc_interval'))} | {_f(cot.get('accuracy_greedy'))} | "
            f"{_f(cot.get('accuracy_cot'))} ({fmt_iv(cot.get('gain'))}) |"
        )
    out += [""] + [f"- {name}: **{c['verdict']}**: {c['why']}" for name, c in r["claims"].items()]
    return out + [""]
