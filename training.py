"""Train the attrition-risk model on the ingested data.

Reads
    output_folder_path/finaldata.csv
Writes (output_model_path, each file atomically)
    trainedmodel.pkl    a scikit-learn Pipeline: median imputer, then the course's
                        logistic regression (C=1.0, liblinear, L2, random_state=0,
                        max_iter=100, tol=1e-4, no class weights) on
                        lastmonth_activity, lastyear_activity, number_of_employees
    trainedmodel.json   metadata: features, rows, class counts, sha256 of the data and
                        of the pickle, library versions, timestamp; and "linear_model",
                        the same model as plain numbers (imputer fill values,
                        coefficients, intercept), checked to give the pickle's answers:
                        what the API serves, so that no server ever unpickles
    referencedata.csv   the training features (a seeded sample of at most 20,000
                        rows), the reference for diagnostics' feature-drift check
Run
    python training.py
Exit status
    0 trained; 65 finaldata.csv is missing or cannot train a model; 78 bad config.json.
"""

from __future__ import annotations

from attrition.core.config import load_config
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import MODEL
from attrition.model.training import NAME, fit, log, read_training_data, save, train_model

# the course's functions, importable from this script as before
__all__ = ["read_training_data", "train_model"]


def main(argv: list[str] | None = None) -> int:
    command_line(__doc__).parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    frame, model, fit_seconds = fit(config.finaldata_file)
    save(config, frame, model, fit_seconds)
    log.info(
        "trained on %d rows of %s; wrote %s", len(frame), config.finaldata_file, config.model_folder / MODEL
    )
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
