"""The emergency call-out (1分钟响应): duty rosters per grid, community and street, and the chain that calls the
grid worker first and then whoever is on duty until someone acknowledges.

- `rosters`: duty shifts (备岗网格员 backup worker of a grid, 社区值班电话 community duty phone, 街道值班领导 street
  duty officer) with on-duty times, edited by the community / street staff covering the place and ops;
- `chain`: the chain's declared table (which step follows which) and its states;
- `service` / `scheduler`: a call-out per emergency request, started by svc_services' `emergency.` feed (ADR 0007),
  escalated every `callout_step_seconds` by a scheduler claiming rows (`FOR UPDATE SKIP LOCKED`, as svc_services'
  SLA scheduler does), so with several replicas each step is made once;
- every attempt and the acknowledgement go back to svc_services' timeline through the `callout.` feed.
"""
