"""router.parse_stat: HAProxy's `show stat` CSV, as `router-ctl stat` prints it (pure)."""

from __future__ import annotations

import pytest

from immutdock.apply.router import BackendStats, Router, Server, parse_stat
from immutdock.errors import EngineError
from immutdock.plan.haproxy import CHECKS, FAST_CHECKS

# Captured from a running immutdock router (HAProxy 2.6.12, `docker exec ... router-ctl stat`), servers s3..s16
# of each backend left out. Blue's template does not resolve (blue is gone); green's s1 is a live container.
REAL = (
    '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,\n'
    'web,FRONTEND,,,0,0,9970,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n'
    'blue,s1,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT (resolution),1,1,0,5,4,1,2,,1,3,1,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'blue,s2,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT (resolution),1,1,0,0,1,44,44,,1,3,2,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'blue,BACKEND,0,0,0,0,1,0,0,0,0,0,,0,0,0,0,DOWN,0,0,0,,4,1,2,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,164,164,29077,3950,0,0,\n'
    'green,s1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,4,4,3,1,,1,4,1,,0,,2,0,,0,L7OK,200,1,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,1,2,2,,,,172.20.0.5:8000,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'green,s2,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT (resolution),1,1,0,0,1,44,44,,1,4,2,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'green,BACKEND,0,0,0,0,1,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,4,3,1,,1,4,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,35,35,5520,750,0,0,\n'
    "\n"  # HAProxy ends the dump with an empty line
)

HEADER = REAL.splitlines()[0]
COLUMNS = HEADER[2:].split(",")


def row(**values: object) -> str:
    """One CSV line with the given columns filled in and the rest empty, in HAProxy's column order."""
    return ",".join(str(values.get(col, "")) for col in COLUMNS)


def dump(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n\n"


def test_real_dump() -> None:
    stats = parse_stat(REAL)
    assert isinstance(stats, BackendStats)
    assert [(s.backend, s.name) for s in stats.servers] == [("blue", "s1"), ("blue", "s2"), ("green", "s1"),
                                                           ("green", "s2")]
    assert stats.sessions == {"blue": 0, "green": 0}
    assert stats.up("green") == [Server(backend="green", name="s1", status="UP", sessions=0, address="172.20.0.5:8000",
                                        check_status="L7OK", check_code=200)]
    assert stats.up("green")[0].passing and stats.up("green")[0].ip == "172.20.0.5"
    assert stats.up("blue") == []
    assert stats.resolved("blue") == []
    assert [s.name for s in stats.resolved("green")] == ["s1"]
    assert stats.servers[0].status == "MAINT (resolution)"
    assert stats.servers[0].address == ""


def test_frontend_and_other_proxies_are_ignored() -> None:
    stats = parse_stat(dump(row(pxname="web", svname="FRONTEND", scur=7, status="OPEN"),
                            row(pxname="stats", svname="s1", scur=1, status="UP"),
                            row(pxname="blue", svname="FRONTEND", scur=3, status="OPEN")))
    assert stats.servers == ()
    assert stats.sessions == {}


def test_sessions_and_statuses() -> None:
    stats = parse_stat(dump(
        row(pxname="blue", svname="s1", scur=4, status="UP", addr="172.20.0.3:8000"),
        row(pxname="blue", svname="s2", scur=1, status="UP 1/2", addr="172.20.0.4:8000"),  # going down
        row(pxname="blue", svname="s3", scur=0, status="DOWN 1/2", addr="172.20.0.6:8000"),  # coming up
        row(pxname="blue", svname="s4", scur="", status="MAINT (resolution)"),
        row(pxname="blue", svname="BACKEND", scur=5, status="UP"),
        row(pxname="green", svname="s1", scur=0, status="DOWN", addr="172.20.0.7:8000"),
        row(pxname="green", svname="s2", scur=0, status="MAINT"),
        row(pxname="green", svname="BACKEND", scur=0, status="DOWN"),
    ))
    assert stats.sessions == {"blue": 5, "green": 0}
    assert [s.name for s in stats.up("blue")] == ["s1", "s2"]
    assert [s.name for s in stats.resolved("blue")] == ["s1", "s2", "s3"]
    assert stats.up("green") == []
    assert [s.name for s in stats.resolved("green")] == ["s1", "s2"]
    assert stats.servers[0].sessions == 4 and stats.servers[3].sessions == 0
    assert stats.servers[1].address == "172.20.0.4:8000"


def test_header_without_hash_prefix() -> None:
    text = dump(row(pxname="green", svname="s1", scur=2, status="UP", addr="10.0.0.2:80"))[2:]
    assert [s.name for s in parse_stat(text).up("green")] == ["s1"]


@pytest.mark.parametrize("text", ["", "\n", HEADER + "\n"])
def test_empty_dump(text: str) -> None:
    stats = parse_stat(text)
    assert stats.servers == () and stats.sessions == {}
    assert stats.up("blue") == []


def test_fallback_servers_are_the_other_colors_and_their_requests_count_as_its() -> None:
    """During the watch after a switch green's backends hold blue's servers as backups
    (fb<release>_<server>): they are not green's servers (not in its gate or its watch), and
    what they carry is blue's to drain. A custom router's own backup server stays a server."""
    stats = parse_stat(dump(
        row(pxname="blue", svname="s1", scur=1, status="UP", bck=0, addr="172.20.0.3:8000"),
        row(pxname="blue", svname="BACKEND", scur=1, status="UP"),
        row(pxname="green", svname="s1", scur=0, status="DOWN", bck=0, addr="172.20.0.7:8000"),
        row(pxname="green", svname="fbr2_s1", scur=2, status="UP", bck=1, addr="172.20.0.3:8000"),
        row(pxname="green", svname="b1", scur=0, status="UP", bck=1, addr="10.0.0.1:80"),
        row(pxname="green_r1", svname="fbr2_s1", scur=1, status="UP", bck=1, addr="172.20.0.3:9000"),
        row(pxname="green_r1", svname="BACKEND", scur=1, status="UP"),
        row(pxname="green", svname="BACKEND", scur=2, status="UP"),
    ))
    assert [(s.backend, s.name) for s in stats.servers] == [("blue", "s1"), ("green", "s1"), ("green", "b1")]
    assert [s.name for s in stats.resolved("green")] == ["s1", "b1"]
    assert stats.sessions == {"blue": 4, "green": 0}
    assert [(s.backend, s.route, s.name) for s in stats.backups] == [("green", 0, "fbr2_s1"), ("green", 1, "fbr2_s1")]


class _Scripted(Router):
    """A Router whose commands are recorded, `show stat` answered from `stat`."""

    def __init__(self, stat: str) -> None:  # no engine: nothing is run
        self.stat, self.sent = stat, []

    def _run(self, argv: list[str]) -> str:
        if argv[0] == "router-ctl":
            return self.stat
        assert argv[:2] == ["sh", "-c"] and argv[3] == "sh", argv  # the line is the script's $1: data
        self.sent.append(argv[4])
        return "New server registered.\n" if argv[4].startswith("add server") else ""


def test_the_fallback_adds_the_old_colors_passing_servers_to_the_new_colors_backends() -> None:
    stat = dump(
        row(pxname="blue", svname="s1", status="UP", bck=0, addr="172.20.0.3:8000", check_status="L7OK",
            check_code=200),
        row(pxname="blue", svname="s2", status="DOWN", bck=0, addr="172.20.0.4:8000", check_status="L4CON"),
        row(pxname="blue_r1", svname="s1", status="UP", bck=0, addr="172.20.0.3:9000", check_status="L4OK"),
        row(pxname="green", svname="s1", status="UP", bck=0, addr="172.20.0.9:8000", check_status="L7OK",
            check_code=200),
        row(pxname="green", svname="fbr3_s1", status="UP", bck=1, addr="172.20.0.3:8000"),  # a killed run's
        row(pxname="green", svname="b1", status="UP", bck=1, addr="10.0.0.1:80"),  # a custom router's own
    )
    router = _Scripted(stat)
    assert router.fallback_on("green", "r4") == 2
    assert router.sent == [
        "disable server green/fbr3_s1; del server green/fbr3_s1",
        f"add server green/fbr4_s1 172.20.0.3:8000 backup check inter {FAST_CHECKS} {CHECKS} rise 1 fall 3",
        "enable health green/fbr4_s1; set server green/fbr4_s1 health up; enable server green/fbr4_s1",
        f"add server green_r1/fbr4_s1 172.20.0.3:9000 backup check inter {FAST_CHECKS} {CHECKS} rise 1 fall 3",
        "enable health green_r1/fbr4_s1; set server green_r1/fbr4_s1 health up; enable server green_r1/fbr4_s1",
    ]
    router.sent.clear()
    router.fallback_off()
    assert router.sent == ["disable server green/fbr3_s1; del server green/fbr3_s1"]


def test_a_fallback_haproxy_refuses_is_an_error() -> None:
    class Refusing(_Scripted):
        def _run(self, argv: list[str]) -> str:
            return self.stat if argv[0] == "router-ctl" else "Unknown command.\n"

    stat = dump(row(pxname="blue", svname="s1", status="UP", bck=0, addr="172.20.0.3:8000", check_status="L7OK",
                    check_code=200))
    with pytest.raises(EngineError, match="refused the fallback server green/fbr2_s1"):
        Refusing(stat).fallback_on("green", "r2")


def test_a_hold_puts_every_slot_of_the_backends_in_maintenance_and_an_admission_forces_it_down_after() -> None:
    stat = dump(
        row(pxname="blue", svname="s1", status="UP", bck=0, addr="172.20.0.3:8000", check_status="L7OK"),
        row(pxname="green", svname="s1", status="UP", bck=0, addr="172.20.0.9:8000", check_status="L7OK"),
        row(pxname="green", svname="s2", status="MAINT (resolution)", bck=0, addr=""),
        row(pxname="green_r1", svname="s1", status="MAINT (resolution)", bck=0, addr=""),
        row(pxname="green", svname="fbr3_s1", status="UP", bck=1, addr="172.20.0.3:8000"),  # a fallback
    )
    router = _Scripted(stat)
    router.hold(["green", "green_r1"])
    router.hold(["green"], unresolved_only=True)  # one a name resolves to was checked already
    router.admit("green", ["s1", "s2"])
    router.admit("green", [])  # nothing to send
    assert router.sent == [
        "set server green/s1 state maint; set server green/s2 state maint; set server green_r1/s1 state maint",
        "set server green/s2 state maint",
        # Out of maintenance first, then down: the other way round it would be UP before any check.
        "set server green/s1 state ready; set server green/s1 health down; "
        "set server green/s2 state ready; set server green/s2 health down",
    ]
