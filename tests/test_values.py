"""Reading what units type: amounts into exact fen, dates, integers, USCC and region codes."""

from datetime import date

import pandas as pd
import pytest

from schemas.values import fen_to_yuan, is_region_code, parse_amount, parse_date, parse_int, uscc_problem


@pytest.mark.parametrize(
    "typed, fen",
    [("1234.5", 123450), ("1,234.50", 123450), ("¥1,234.50", 123450), ("１２３４．５０", 123450),
     ("￥ 100000 元", 10000000), ("0.01", 1), ("-5", -500), ("100000", 10000000)],
)
def test_amounts_read_exactly_into_fen(typed, fen):
    assert parse_amount(pd.Series([typed])).loc[0, "fen"] == fen


@pytest.mark.parametrize("typed", ["abc", "", "1.2.3", "12元5角"])
def test_unreadable_amounts_are_flagged_not_guessed(typed):
    row = parse_amount(pd.Series([typed])).loc[0]
    assert not row["readable"] and pd.isna(row["fen"])


def test_more_than_two_decimals_is_readable_but_not_an_exact_amount():
    row = parse_amount(pd.Series(["1.234"])).loc[0]
    assert row["readable"] and row["decimals"] == 3 and pd.isna(row["fen"])


def test_sum_of_many_small_amounts_does_not_drift():
    # 0.1 yuan a hundred thousand times is exactly 10000.00 yuan: no float on the way.
    fen = parse_amount(pd.Series(["0.10"] * 100_000))["fen"]
    assert int(fen.sum()) == 1_000_000
    assert fen_to_yuan(int(fen.sum())) == "10000.00"


@pytest.mark.parametrize("typed", ["2023-06-01", "2023/6/1", "2023.06.01", "2023年6月1日", "２０２３－０６－０１"])
def test_date_variants(typed):
    assert parse_date(pd.Series([typed])).iloc[0] == pd.Timestamp("2023-06-01")


@pytest.mark.parametrize("typed", ["2023-13-01", "2023-02-30", "六月一日", "45078"])
def test_impossible_or_foreign_dates_are_unreadable(typed):
    assert pd.isna(parse_date(pd.Series([typed])).iloc[0])


def test_integers():
    assert parse_int(pd.Series(["12", "12.0", "１２", "1,200", "x", "1.5"])).tolist()[:4] == [12, 12, 12, 1200]
    assert parse_int(pd.Series(["x", "1.5"])).isna().all()


def test_fen_to_yuan_has_exactly_two_places():
    assert [fen_to_yuan(f) for f in (0, 1, 10, 10000000, -50001)] == ["0.00", "0.01", "0.10", "100000.00", "-500.01"]


def test_uscc_check_digit():
    assert uscc_problem("91350100M000100Y43") is None
    assert "校验位应为 3" in uscc_problem("91350100M000100Y44")
    assert uscc_problem("91350100M00010OY43") is not None  # the letter O is not in the alphabet


def test_region_codes():
    assert is_region_code(pd.Series(["310104", "533422", "310115.0", "999999", "31010", "000000"])).tolist() == [
        True, True, True, False, False, False]


# "١٢٣": digits of another script, which NFKC leaves as they are; the two readers once disagreed on them,
# and on dates outside the years pandas holds.
SAMPLES = ["1234.5", "1,234.50", "¥1,234.50", "１２３４．５０", "-5", "1.234", "abc", "", "0.01", " 7 元", "1.", "١٢٣",
           "2023-06-01", "2023/6/1", "2023年6月1日", "2023-02-30", "2023.06.01 08:00", "٢٠٢٣-٠٦-٠١", "1500-01-01",
           "2262-05-01"]


def test_one_value_readers_agree_with_the_vectorised_ones():
    from schemas.values import amount_of, date_of, int_of

    amounts = parse_amount(pd.Series(SAMPLES))
    dates = parse_date(pd.Series(SAMPLES))
    for i, typed in enumerate(SAMPLES):
        one = amount_of(typed)
        assert one.readable == amounts.loc[i, "readable"], typed
        assert one.fen == (None if pd.isna(amounts.loc[i, "fen"]) else amounts.loc[i, "fen"]), typed
        assert date_of(typed) == (None if pd.isna(dates.iloc[i]) else dates.iloc[i].date()), typed
    for typed, vectorised in zip(SAMPLES + ["12", "12.0", "1,200"], parse_int(pd.Series(SAMPLES + ["12", "12.0", "1,200"]))):
        assert int_of(typed) == (None if pd.isna(vectorised) else vectorised), typed


def test_the_usual_amount_reads_as_the_patterns_read_it():
    """_amount reads the usual shape without its patterns: it must answer as they do, whatever the digits."""
    from schemas.values import _amount, _amount_by_pattern

    digits = ["0", "7", "12", "٣", "１", "²", "⑤", "Ⅻ", "_", "e"]
    typed = [f"{w}{point}{f}" for w in ["", *digits, "1_000", "007"] for point in ["", ".", ".."]
             for f in ["", *digits, "05", "123", "٣٤"]]
    typed += SAMPLES + ["1.2.3", ".5", "+5", "5.-1", "1e3", "12 ", "1,2.5"]
    assert [_amount(t) for t in typed] == [_amount_by_pattern(t) for t in typed]
    assert _amount("161.59") == (True, 2, 16159) and _amount("٣.٤") == (True, 1, 340)


def test_digits_of_another_script_read_and_years_pandas_cannot_hold_do_not():
    # What both readers answer (the test above holds them to each other, not to an answer).
    from schemas.values import amount_of, date_of, int_of

    assert amount_of("١٢٣").fen == 12300 and int_of("١٢٣") == 123
    assert date_of("٢٠٢٣-٠٦-٠١") == date(2023, 6, 1)
    assert date_of("1500-01-01") is None and date_of("2262-05-01") is None and date_of("2261-12-31") == date(2261, 12, 31)
    assert parse_date(pd.Series(["1500-01-01", "2261-12-31"])).isna().tolist() == [True, False]


def test_readers_answer_each_cell_as_if_read_alone():
    # The readers read each distinct value once and spread the answer: repeats, blanks, NA and
    # the caller's index must come back in place.
    cells = pd.Series(["1,234.5", None, "x", "1,234.5", float("nan"), "２０２３年６月１日", "1,234.5"],
                      index=[10, 3, 7, 8, 2, 5, 1])
    alone = [(parse_amount(pd.Series([c])).iloc[0].tolist(), parse_date(pd.Series([c])).iloc[0],
              parse_int(pd.Series([c])).iloc[0]) for c in cells]
    amounts, dates, ints = parse_amount(cells), parse_date(cells), parse_int(cells)
    assert list(amounts.index) == list(dates.index) == list(ints.index) == list(cells.index)
    for i, (amount, day, integer) in enumerate(alone):
        assert [None if pd.isna(v) else v for v in amounts.iloc[i]] == [None if pd.isna(v) else v for v in amount]
        assert (pd.isna(dates.iloc[i]) and pd.isna(day)) or dates.iloc[i] == day
        assert (pd.isna(ints.iloc[i]) and pd.isna(integer)) or ints.iloc[i] == integer


def test_blank_is_empty_after_cleaning():
    from schemas.values import clean_text, is_blank

    cells = pd.Series(["", " ", "\u3000", "\u00a0\t", None, float("nan"), "0", " x ", "\u3000甲", 12])
    assert is_blank(cells).tolist() == [True, True, True, True, True, True, False, False, False, False]
    assert is_blank(cells).tolist() == (clean_text(cells) == "").tolist()
    assert clean_text(cells).tolist()[-3:] == ["x", "甲", "12"]
