"""Tests of the unit and pilot state models in rp_executor.states."""

from __future__ import annotations

import pytest

from rp_executor import states as st
from rp_executor.exceptions import BadParameter, IncorrectState

UNIT_ORDER = [
    'NEW', 'UMGR_SCHEDULING_PENDING', 'UMGR_SCHEDULING', 'UMGR_STAGING_INPUT_PENDING',
    'UMGR_STAGING_INPUT', 'AGENT_STAGING_INPUT_PENDING', 'AGENT_STAGING_INPUT',
    'AGENT_SCHEDULING_PENDING', 'AGENT_SCHEDULING', 'EXECUTING_PENDING', 'EXECUTING',
    'AGENT_STAGING_OUTPUT_PENDING', 'AGENT_STAGING_OUTPUT', 'UMGR_STAGING_OUTPUT_PENDING',
    'UMGR_STAGING_OUTPUT',
]
PILOT_ORDER = ['NEW', 'PMGR_LAUNCHING_PENDING', 'PMGR_LAUNCHING', 'PMGR_ACTIVE_PENDING',
               'PMGR_ACTIVE']
FINALS = ['DONE', 'FAILED', 'CANCELED']


# -- names, order, values -----------------------------------------------------------

def test_every_canonical_constant_is_a_string_equal_to_its_name():
    for state in st.UNIT_STATES + st.PILOT_STATES:
        assert getattr(st, state) == state


def test_unit_states_are_in_rp_order_with_finals_last():
    assert st.UNIT_STATES == tuple(UNIT_ORDER) + ('DONE', 'CANCELED', 'FAILED')
    assert [st.unit_value(s) for s in UNIT_ORDER] == list(range(15))


def test_pilot_states_are_in_rp_order_with_finals_last():
    assert st.PILOT_STATES == tuple(PILOT_ORDER) + ('DONE', 'CANCELED', 'FAILED')
    assert [st.pilot_value(s) for s in PILOT_ORDER] == list(range(5))


def test_final_states_share_the_highest_value_and_none_is_before_new():
    assert {st.unit_value(s) for s in FINALS} == {15}
    assert {st.pilot_value(s) for s in FINALS} == {5}
    assert st.unit_value(None) == st.pilot_value(None) == -1


def test_initial_and_final_shortcuts_match_rp():
    assert st.INITIAL == ['NEW']
    assert st.FINAL == ['DONE', 'FAILED', 'CANCELED']
    assert st.FINAL_STATES == frozenset(FINALS)


def test_module_aliases_name_the_canonical_states():
    assert st.AGENT_EXECUTING_PENDING == 'EXECUTING_PENDING'
    assert st.AGENT_EXECUTING == 'EXECUTING'
    assert st.LAUNCHING == st.PMGR_LAUNCHING
    assert st.ACTIVE_PENDING == st.PENDING_ACTIVE == st.PMGR_ACTIVE_PENDING
    assert st.ACTIVE == st.PMGR_ACTIVE
    assert st.PENDING_LAUNCH == st.PMGR_LAUNCHING_PENDING


def test_value_of_an_alias_is_the_value_of_its_state():
    assert st.unit_value('AGENT_EXECUTING') == st.unit_value('EXECUTING') == 10
    assert st.pilot_value('ACTIVE') == 4


# -- legacy names ---------------------------------------------------------------------

def test_state_mapping_current_column_is_the_canonical_order():
    assert [row[2] for row in st.STATE_MAPPING] == list(st.UNIT_STATES)


def test_legacy_columns_hold_exactly_the_names_of_each_old_model():
    def column(i):
        seen = []
        for row in st.STATE_MAPPING:
            if row[i] is not None and row[i] not in seen:
                seen.append(row[i])
        return seen
    assert set(column(0)) == set(st.UNIT_STATES_LT_0_27)
    assert set(column(1)) == set(st.UNIT_STATES_0_28)


@pytest.mark.parametrize('row', st.STATE_MAPPING, ids=lambda row: row[2])
def test_every_legacy_name_in_the_table_maps_to_a_state_of_its_rows(row):
    for legacy in row[:2]:
        if legacy is None:
            continue
        candidates = {r[2] for r in st.STATE_MAPPING if legacy in r[:2]}
        assert st.unit_state(legacy) in candidates


@pytest.mark.parametrize('legacy', sorted({name for row in st.STATE_MAPPING
                                           for name in row[:2] if name}))
def test_ambiguous_legacy_name_resolves_to_the_earliest_candidate(legacy):
    candidates = [r[2] for r in st.STATE_MAPPING if legacy in r[:2]]
    assert st.unit_state(legacy) == min(candidates, key=st.unit_value)


@pytest.mark.parametrize('legacy, state', [
    ('SCHEDULING', 'UMGR_SCHEDULING'),
    ('STAGING_INPUT', 'UMGR_STAGING_INPUT'),
    ('STAGING_OUTPUT', 'AGENT_STAGING_OUTPUT'),
    ('ALLOCATING', 'AGENT_SCHEDULING'),
    ('PENDING_EXECUTION', 'AGENT_SCHEDULING_PENDING'),
])
def test_legacy_names_with_several_meanings_take_the_documented_one(legacy, state):
    assert st.unit_state(legacy) == state


@pytest.mark.parametrize('legacy, state', sorted(st.LEGACY_UNIT_STATES.items()))
def test_every_legacy_unit_name_normalises_to_its_canonical_state(legacy, state):
    assert state in st.UNIT_STATES
    assert st.unit_state(legacy) == state


@pytest.mark.parametrize('legacy, state', sorted(st.LEGACY_PILOT_STATES.items()))
def test_every_legacy_pilot_name_normalises_to_its_canonical_state(legacy, state):
    assert state in st.PILOT_STATES
    assert st.pilot_state(legacy) == state


@pytest.mark.parametrize('legacy, state', [
    ('New', 'NEW'), ('Unscheduled', 'UMGR_SCHEDULING_PENDING'),
    ('PendingInputStaging', 'UMGR_STAGING_INPUT_PENDING'),
    ('StagingInput', 'UMGR_STAGING_INPUT'), ('PendingExecution', 'AGENT_SCHEDULING_PENDING'),
    ('Scheduling', 'UMGR_SCHEDULING'), ('Allocating', 'AGENT_SCHEDULING'),
    ('ExecutingPending', 'EXECUTING_PENDING'), ('Executing', 'EXECUTING'),
    ('PendingOutputStaging', 'UMGR_STAGING_OUTPUT_PENDING'),
    ('StagingOutput', 'UMGR_STAGING_OUTPUT'), ('Done', 'DONE'), ('Canceled', 'CANCELED'),
    ('Canceling', 'CANCELED'), ('Failed', 'FAILED'), ('Pending', 'UMGR_SCHEDULING_PENDING'),
    ('AGENT_EXECUTING_PENDING', 'EXECUTING_PENDING'), ('AGENT_EXECUTING', 'EXECUTING'),
    ('UNSCHEDULED', 'UMGR_SCHEDULING_PENDING'),
    ('PENDING_INPUT_STAGING', 'UMGR_STAGING_INPUT_PENDING'),
    ('ALLOCATING_PENDING', 'AGENT_SCHEDULING_PENDING'),
    ('PENDING_OUTPUT_STAGING', 'AGENT_STAGING_OUTPUT_PENDING'),
])
def test_old_unit_spellings_are_accepted(legacy, state):
    assert st.unit_state(legacy) == state


@pytest.mark.parametrize('legacy, state', [
    ('PendingLaunch', 'PMGR_LAUNCHING_PENDING'), ('Launching', 'PMGR_LAUNCHING'),
    ('PendingActive', 'PMGR_ACTIVE_PENDING'), ('Active', 'PMGR_ACTIVE'),
    ('Done', 'DONE'), ('Failed', 'FAILED'), ('Canceled', 'CANCELED'),
    ('Canceling', 'CANCELED'), ('New', 'NEW'),
    ('PENDING_LAUNCH', 'PMGR_LAUNCHING_PENDING'), ('PENDING_ACTIVE', 'PMGR_ACTIVE_PENDING'),
    ('LAUNCHING', 'PMGR_LAUNCHING'), ('ACTIVE_PENDING', 'PMGR_ACTIVE_PENDING'),
    ('ACTIVE', 'PMGR_ACTIVE'),
])
def test_old_pilot_spellings_are_accepted(legacy, state):
    assert st.pilot_state(legacy) == state


def test_canonical_names_normalise_to_themselves():
    assert [st.unit_state(s) for s in st.UNIT_STATES] == list(st.UNIT_STATES)
    assert [st.pilot_state(s) for s in st.PILOT_STATES] == list(st.PILOT_STATES)


def test_legacy_camelcase_matching_is_case_sensitive():
    with pytest.raises(BadParameter):
        st.unit_state('executing')
    with pytest.raises(BadParameter):
        st.pilot_state('ACTIVE_pending')


def test_unit_and_pilot_names_do_not_mix():
    with pytest.raises(BadParameter):
        st.unit_state('PMGR_ACTIVE')
    with pytest.raises(BadParameter):
        st.pilot_state('EXECUTING')


# -- errors ---------------------------------------------------------------------------

def test_unknown_unit_state_names_the_value_suggests_a_match_and_lists_states():
    with pytest.raises(BadParameter) as info:
        st.unit_state('EXECUTNG')
    err = info.value
    assert err.attribute == 'state'
    assert err.value == 'EXECUTNG'
    assert "'EXECUTNG'" in str(err)
    assert "did you mean 'EXECUTING'" in str(err)
    for state in st.UNIT_STATES:
        assert state in str(err)


def test_unknown_pilot_state_suggests_a_close_match():
    with pytest.raises(BadParameter, match="did you mean 'PMGR_ACTIVE'"):
        st.pilot_state('PMGR_ACTIV')


def test_non_string_state_is_a_bad_parameter_not_a_type_error():
    for bad in (None, 5, ['DONE']):
        with pytest.raises(BadParameter):
            st.unit_state(bad)


def test_state_lists_accept_none_a_string_or_an_iterable():
    assert st.unit_states(None) == ['DONE', 'FAILED', 'CANCELED']
    assert st.pilot_states(None) == ['DONE', 'FAILED', 'CANCELED']
    assert st.unit_states('Executing') == ['EXECUTING']
    assert st.unit_states(('Done', 'AGENT_EXECUTING')) == ['DONE', 'EXECUTING']
    assert st.pilot_states(x for x in ['Active', 'CANCELED']) == ['PMGR_ACTIVE', 'CANCELED']
    with pytest.raises(BadParameter):
        st.unit_states(['DONE', 'DONNE'])


# -- progress -------------------------------------------------------------------------

def test_progress_from_nothing_to_done_passes_all_sixteen_unit_states():
    passed = st.unit_progress(None, 'DONE')
    assert list(passed) == UNIT_ORDER + ['DONE']
    assert len(passed) == 16


def test_progress_to_done_fills_in_every_skipped_state():
    assert list(st.unit_progress('EXECUTING', 'DONE')) == UNIT_ORDER[11:] + ['DONE']
    assert list(st.pilot_progress('NEW', 'DONE')) == PILOT_ORDER[1:] + ['DONE']


def test_progress_to_an_intermediate_state_fills_in_and_ends_with_it():
    assert list(st.unit_progress('NEW', 'UMGR_SCHEDULING')) == [
        'UMGR_SCHEDULING_PENDING', 'UMGR_SCHEDULING']
    assert list(st.unit_progress(None, 'NEW')) == ['NEW']
    assert list(st.pilot_progress('PMGR_LAUNCHING', 'PMGR_ACTIVE')) == [
        'PMGR_ACTIVE_PENDING', 'PMGR_ACTIVE']


@pytest.mark.parametrize('target', ['FAILED', 'CANCELED'])
def test_progress_to_failed_or_canceled_passes_only_the_final_state(target):
    assert list(st.unit_progress(None, target)) == [target]
    assert list(st.unit_progress('AGENT_SCHEDULING', target)) == [target]
    assert list(st.pilot_progress('PMGR_ACTIVE', target)) == [target]


def test_stale_update_passes_nothing():
    assert list(st.unit_progress('EXECUTING', 'EXECUTING')) == []
    assert list(st.unit_progress('EXECUTING', 'UMGR_SCHEDULING')) == []
    assert list(st.pilot_progress('PMGR_ACTIVE', 'PMGR_LAUNCHING')) == []


@pytest.mark.parametrize('current', FINALS)
def test_final_states_are_never_left(current):
    for target in st.UNIT_STATES:
        assert list(st.unit_progress(current, target)) == []
    for target in st.PILOT_STATES:
        assert list(st.pilot_progress(current, target)) == []


def test_progress_accepts_legacy_spellings():
    assert list(st.unit_progress('Executing', 'AgentStagingOutput')) == [
        'AGENT_STAGING_OUTPUT_PENDING', 'AGENT_STAGING_OUTPUT']
    assert list(st.pilot_progress('PendingActive', 'ACTIVE')) == ['PMGR_ACTIVE']


def test_progress_rejects_unknown_states():
    with pytest.raises(BadParameter):
        st.unit_progress('NEW', 'FINISHED')
    with pytest.raises(BadParameter):
        st.pilot_progress('BOGUS', 'DONE')


def test_progress_always_moves_forward_and_ends_with_the_target():
    for current in (None,) + st.UNIT_STATES:
        for target in st.UNIT_STATES:
            passed = st.unit_progress(current, target)
            if passed:
                assert passed[-1] == target
                values = [st.unit_value(s) for s in passed]
                assert values == sorted(values)
                assert values[0] > st.unit_value(current)


# -- finals, transitions, collapse ----------------------------------------------------

def test_is_final_knows_canonical_and_legacy_finals():
    assert all(st.is_final(s) for s in FINALS + ['Done', 'Failed', 'Canceled', 'Canceling'])
    assert not any(st.is_final(s) for s in UNIT_ORDER + PILOT_ORDER + [None])


def test_allowed_transitions_are_the_next_state_or_any_final():
    assert st.ALLOWED_UNIT_TRANSITIONS['NEW'] == frozenset(
        {'UMGR_SCHEDULING_PENDING', 'DONE', 'FAILED', 'CANCELED'})
    assert st.ALLOWED_UNIT_TRANSITIONS['UMGR_STAGING_OUTPUT'] == frozenset(FINALS)
    assert st.ALLOWED_PILOT_TRANSITIONS['PMGR_ACTIVE_PENDING'] == frozenset(
        {'PMGR_ACTIVE', 'DONE', 'FAILED', 'CANCELED'})
    for final in FINALS:
        assert st.ALLOWED_UNIT_TRANSITIONS[final] == frozenset()
        assert st.ALLOWED_PILOT_TRANSITIONS[final] == frozenset()


def test_every_non_final_state_has_its_successor():
    for order, allowed in ((UNIT_ORDER, st.ALLOWED_UNIT_TRANSITIONS),
                           (PILOT_ORDER, st.ALLOWED_PILOT_TRANSITIONS)):
        for state, following in zip(order, order[1:]):
            assert following in allowed[state]


def test_check_transition_accepts_allowed_moves():
    st.check_transition('unit', None, 'NEW')
    st.check_transition('unit', 'AGENT_EXECUTING_PENDING', 'EXECUTING')
    st.check_transition('unit', 'EXECUTING', 'CANCELED')
    st.check_transition('pilot', 'PendingActive', 'PMGR_ACTIVE')


def test_check_transition_refuses_leaving_a_final_state():
    with pytest.raises(IncorrectState, match='DONE -> FAILED.*final'):
        st.check_transition('unit', 'DONE', 'FAILED')
    with pytest.raises(IncorrectState, match='CANCELED -> DONE'):
        st.check_transition('pilot', 'CANCELED', 'DONE')


def test_check_transition_refuses_skips_and_says_what_may_follow():
    with pytest.raises(IncorrectState, match='NEW -> EXECUTING.*UMGR_SCHEDULING_PENDING'):
        st.check_transition('unit', 'NEW', 'EXECUTING')
    with pytest.raises(IncorrectState):
        st.check_transition('pilot', 'PMGR_ACTIVE', 'PMGR_LAUNCHING')


def test_check_transition_rejects_an_unknown_model():
    with pytest.raises(BadParameter, match="'task'"):
        st.check_transition('task', 'NEW', 'DONE')


@pytest.mark.parametrize('history, expected', [
    (['NEW', 'UMGR_SCHEDULING_PENDING', 'DONE', 'FAILED', 'CANCELED'], 'DONE'),
    (['CANCELED', 'FAILED', 'EXECUTING'], 'FAILED'),
    (['EXECUTING', 'CANCELED'], 'CANCELED'),
    (['NEW', 'EXECUTING', 'UMGR_SCHEDULING'], 'EXECUTING'),
    (['Executing', 'AgentStagingOutput'], 'AGENT_STAGING_OUTPUT'),
    ([], None),
])
def test_unit_collapse_prefers_done_then_failed_then_canceled_then_highest(
        history, expected):
    assert st.collapse_unit_states(history) == expected


def test_pilot_collapse_prefers_done_then_failed_then_canceled_then_highest():
    assert st.collapse_pilot_states(['FAILED', 'DONE']) == 'DONE'
    assert st.collapse_pilot_states(['CANCELED', 'FAILED']) == 'FAILED'
    assert st.collapse_pilot_states(['PMGR_ACTIVE', 'NEW', 'PMGR_LAUNCHING']) == 'PMGR_ACTIVE'
