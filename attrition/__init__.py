"""The attrition-risk pipeline's code, one room a concern (README: Architecture)."""
