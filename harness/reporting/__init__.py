"""What is read from records: paper-style tables, figures, the comparison with committed results, run summaries.
"""
