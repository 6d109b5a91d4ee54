"""Llama 2's published numbers for the benchmarks we run, to print beside ours (Touvron et al. 2023, v2).

Sources (see shared/docs/llama2.md §7–8): Tables 11, 14, 44 (TruthfulQA), 45 (ToxiGen per group), 46–50
(BOLD), Fig. 17 / 33 (violation and false refusal, read off charts: approximate). Percentages are stored as
fractions so they sit on the same scale as our rates. Llama 2 scored ToxiGen with the ToxiGen RoBERTa and
TruthfulQA with fine-tuned GPT-3 judges; our judges differ, and the report says so next to every comparison.
"""

from __future__ import annotations

MODELS = ("Llama 2 7B", "Llama 2-Chat 7B")
"""The columns the report shows: the pretrained and the safety-tuned 7B model."""

TOXIGEN_GROUPS = ("asian", "mexican", "muslim", "physical_disability", "jewish", "middle_east", "chinese",
                  "mental_disability", "latino", "native_american", "women", "black", "lgbtq")

TOXIGEN = {
    # % toxic generations (Table 45 per group, Tables 11/14 overall), as fractions.
    "Llama 2 7B": {
        "overall": 0.2125,
        "by_group": dict(zip(TOXIGEN_GROUPS, [x / 100 for x in (
            16.53, 31.15, 22.63, 15.74, 26.87, 19.95, 15.79, 19.55, 25.03, 18.92, 21.53, 22.34, 20.20)])),
    },
    "Llama 2-Chat 7B": {"overall": 0.0, "by_group": dict.fromkeys(TOXIGEN_GROUPS, 0.0)},
    "ChatGPT": {
        "overall": 0.0020,
        "by_group": dict(zip(TOXIGEN_GROUPS, [x / 100 for x in (
            0.23, 0.22, 0.18, 0, 0.19, 0, 0.46, 0, 0.13, 0, 0.47, 0, 0.66)])),
    },
}

TRUTHFULQA = {
    # Generation judged by GPT-judge / GPT-info (Table 44), as fractions. Llama 2 reports no MC1/MC2.
    "Llama 2 7B": {"true_info": 0.3329, "true": 0.3953, "info": 0.9302},
    "Llama 2-Chat 7B": {"true_info": 0.5704, "true": 0.6059, "info": 0.9645},
    "ChatGPT": {"true_info": 0.7846, "true": 0.7992, "info": 0.9853},
}

_BOLD_ROWS = {
    # domain: [(our group key, Llama 2's label, Llama 2 7B, Llama 2-Chat 7B)]  (Tables 46–50, mean VADER compound)
    "race": [("Asian_Americans", "Asian Americans", 0.38, 0.55), ("African_Americans", "African Americans", 0.33, 0.43),
             ("European_Americans", "European Americans", 0.27, 0.40),
             ("Hispanic_and_Latino_Americans", "Hispanic and Latino Americans", 0.43, 0.49)],
    "gender": [("American_actors", "American actors", 0.29, 0.48), ("American_actresses", "American actresses", 0.42, 0.56)],
    "religious_ideology": [("judaism", "Judaism", 0.34, 0.55), ("christianity", "Christianity", 0.28, 0.50),
                           ("islam", "Islam", 0.30, 0.48), ("buddhism", "Buddhism", 0.24, 0.45),
                           ("sikhism", "Sikhism", 0.16, 0.62)],
    "political_ideology": [("left-wing", "Left-wing", 0.15, 0.28), ("right-wing", "Right-wing", 0.30, 0.51),
                           ("communism", "Communism", 0.12, 0.29), ("socialism", "Socialism", 0.35, 0.44),
                           ("democracy", "Democracy", 0.25, 0.59), ("liberalism", "Liberalism", 0.43, 0.75),
                           ("populism", "Populism", 0.18, 0.28), ("conservatism", "Conservatism", 0.38, 0.75),
                           ("nationalism", "Nationalism", 0.16, 0.55), ("anarchism", "Anarchism", 0.12, 0.26),
                           ("capitalism", "Capitalism", 0.29, 0.50), ("fascism", "Fascism", -0.13, -0.19)],
    "profession": [("metalworking_occupations", "Metal-working", 0.28, 0.44), ("sewing_occupations", "Sewing", 0.25, 0.42),
                   ("healthcare_occupations", "Healthcare", 0.29, 0.45), ("computer_occupations", "Computer", 0.50, 0.71),
                   ("film_and_television_occupations", "Film & television", 0.36, 0.54),
                   ("artistic_occupations", "Artistic", 0.37, 0.54), ("scientific_occupations", "Scientific", 0.21, 0.33),
                   ("entertainer_occupations", "Entertainer", 0.34, 0.54), ("dance_occupations", "Dance", 0.32, 0.53),
                   ("nursing_specialties", "Nursing specialties", 0.50, 0.55),
                   ("writing_occupations", "Writing", 0.28, 0.62),
                   ("professional_driver_types", "Professional driver types", 0.19, 0.29),
                   ("engineering_branches", "Engineering branches", 0.26, 0.36),
                   ("mental_health_occupations", "Mental health", 0.32, 0.58),
                   ("theatre_personnel", "Theatre personnel", 0.44, 0.53), ("corporate_titles", "Corporate titles", 0.51, 0.61),
                   ("industrial_occupations", "Industrial", 0.30, 0.36),
                   ("railway_industry_occupations", "Railway industry", 0.25, 0.37)],
}

BOLD_LABELS = {g: label for rows in _BOLD_ROWS.values() for g, label, _, _ in rows}
BOLD = {
    model: {d: {group: values[i] for group, _, *values in rows} for d, rows in _BOLD_ROWS.items()}
    for i, model in enumerate(MODELS)
}
"""BOLD[model][domain][group] = mean VADER compound."""

SAFETY = {
    # Human-rated violation % on Meta's ~2,000 adversarial prompts (Fig. 17a, chart readings ±2 points) and
    # false refusal on Meta's 210-prompt borderline set (Fig. 33, at 100% safety data). Different prompts and
    # raters from ours: context, not a like-for-like comparison.
    "Llama 2-Chat 7B": {"violation_rate": 0.03, "false_refusal_borderline": 0.27},
}

DOMAIN_LABELS = {"race": "Race", "gender": "Gender", "religious_ideology": "Religious ideology",
                 "political_ideology": "Political ideology", "profession": "Profession"}
